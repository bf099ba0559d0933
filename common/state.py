"""The local state cache: one JSON file per box under TRAINBOX_HOME/state.

AWS tags are the truth; this file only saves lookups and remembers how to
reach the box (SSH address, key, login user, working directory on the box).
Losing it never orphans a resource: `down` and `ls` work from tags alone.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from box.layout import DEFAULT_WORKDIR

from . import checks, paths
from .errors import UsageError, name_flag


@dataclass
class BoxState:
    name: str
    region: str
    instance_id: str
    instance_type: str
    ssh_host: str
    ssh_user: str
    key_path: str
    ssh_port: int = 22
    # Where trainbox keeps code, data and runs on the box; relative paths are
    # relative to the login user's home.
    workdir: str = DEFAULT_WORKDIR
    # The interpreter on the box that has TensorFlow; None: trainbox's own env.
    python: str | None = None
    # The moto endpoint when this box lives in the sandbox, else None.
    endpoint_url: str | None = None
    ami: str = ""
    public_ip: str | None = None
    launched_at: float = 0.0
    price_per_hour: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def sandbox(self) -> bool:
        return self.endpoint_url is not None


class CorruptState(UsageError):
    """A state file that cannot be read or holds what trainbox never wrote."""


def _file(name: str) -> Path:
    return paths.state_dir() / f"{checks.box_name(name)}.json"


def save(state: BoxState) -> None:
    paths.write_atomic(_file(state.name), json.dumps(dataclasses.asdict(state), indent=2))


def load(name: str) -> BoxState | None:
    f = _file(name)
    if not f.exists():
        return None
    flag = name_flag(name)
    try:
        data = json.loads(f.read_text())
        known = {f.name for f in dataclasses.fields(BoxState)}
        box = BoxState(**{k: v for k, v in data.items() if k in known})
        _check(box, name, str(f))
    except (OSError, ValueError, TypeError, AttributeError, UsageError) as e:
        why = e.what if isinstance(e, UsageError) else f"{type(e).__name__}: {e}"
        raise CorruptState(f"the state file {f} is corrupt ({why})",
                           f"remove it (AWS tags are the truth: `python -m provision down{flag}` works without it)") from None
    return box


def _check(box: BoxState, name: str, source: str) -> None:
    """What reaches ssh_config, shell commands and paths must be what trainbox wrote."""
    if box.name != name:
        raise UsageError(f"it names the box {box.name!r}")
    for key in ("region", "instance_id", "instance_type", "ssh_host", "ssh_user", "key_path", "workdir"):
        checks.plain(getattr(box, key), key)
    for key in ("python", "endpoint_url", "public_ip"):
        if getattr(box, key) is not None:
            checks.plain(getattr(box, key), key)
    checks.port(box.ssh_port, "ssh_port")


def forget(name: str) -> None:
    _file(name).unlink(missing_ok=True)


def names() -> list[str]:
    return sorted(p.stem for p in paths.state_dir().glob("*.json") if _valid(p.stem))


def _valid(name: str) -> bool:
    try:
        checks.box_name(name)
    except UsageError:
        return False
    return True
