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

from . import paths


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


def _file(name: str) -> Path:
    return paths.state_dir() / f"{name}.json"


def save(state: BoxState) -> None:
    paths.write_atomic(_file(state.name), json.dumps(dataclasses.asdict(state), indent=2))


def load(name: str) -> BoxState | None:
    f = _file(name)
    if not f.exists():
        return None
    data = json.loads(f.read_text())
    known = {f.name for f in dataclasses.fields(BoxState)}
    return BoxState(**{k: v for k, v in data.items() if k in known})


def forget(name: str) -> None:
    _file(name).unlink(missing_ok=True)


def names() -> list[str]:
    return sorted(p.stem for p in paths.state_dir().glob("*.json"))
