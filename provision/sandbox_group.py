"""The sandbox plays a --recover box's Auto Scaling group (provision/recover.py): not yet."""

from __future__ import annotations

from common.errors import UsageError


def replace_box(cloud, box, old_instance: str) -> None:
    raise UsageError(
        f"box '{box.name}''s group replaced {old_instance} by {box.instance_id}: the sandbox does not boot a box "
        "for a replacement yet",
        "`python -m provision down --sandbox` and `up` again",
    )
