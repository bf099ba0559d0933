"""Which AWS a `python -m provision` command talks to: picked here only."""

from __future__ import annotations

from common import state
from common.aws import Cloud
from common.cliutil import sandbox_note, say
from common.errors import UsageError
from common.state import no_box
from provision import config, lifecycle
from sandbox import boxes as sandbox

PROG = "python -m provision"


def cloud_for(args, load=state.load, named: bool = True) -> Cloud:
    """The AWS a command talks to, picked here only: the box's own (from its state), the sandbox
    (asked with --sandbox, or the only place the name is known: said once, on stderr), or AWS.
    ``named``: the command is about the box named, which, known nowhere here and with no AWS
    credentials to look for it (and no --region asking for AWS), is no box."""
    asked = getattr(args, "sandbox", False)
    box = load(args.name)
    if box is not None:
        if asked and not box.sandbox:
            raise on_aws(box)
        if box.sandbox and not asked:
            sandbox_note(args.name)
        return lifecycle.cloud_of(box)
    if asked or args.name in sandbox.sandbox_boxes():
        if not asked:
            sandbox_note(args.name)
        cloud = sandbox_cloud()
        if cloud is None:
            raise UsageError("the sandbox is not running", f"start it with `{PROG} up --sandbox`")
        return cloud
    if named and getattr(args, "region", None) is None:
        from common.aws import has_credentials

        if not has_credentials():
            raise no_box(args.name, "AWS was not checked: no AWS credentials")
    return Cloud(config.setting("region", getattr(args, "region", None)))


def on_aws(box: state.BoxState) -> UsageError:
    return UsageError(f"box '{box.name}' is on AWS ({box.region}), not in the sandbox", "drop --sandbox")


def sandbox_cloud() -> Cloud | None:
    """The sandbox's AWS, or None when it is not running (its moto holds its cloud in memory: nothing is left)."""
    endpoint = sandbox.endpoint()
    return Cloud(sandbox.REGION, endpoint, sandbox=True) if endpoint else None


def state_or_warn(name: str) -> state.BoxState | None:
    """The box's state; a corrupt one is named and set aside: `down` finds the box by its tags."""
    try:
        return state.load(name)
    except state.CorruptState as e:
        say(f"warning: {e.what}; going on without it (AWS tags find the box)")
        return None
