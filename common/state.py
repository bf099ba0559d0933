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
class Node:
    """One instance of a box of several nodes (the box's other nodes: index 1 and up)."""

    index: int
    instance_id: str
    ssh_host: str
    ssh_port: int = 22
    private_ip: str | None = None
    public_ip: str | None = None
    # Its own workdir where it differs from the box's (the sandbox's process
    # boxes share one machine, so each has its own disk); None: the box's.
    workdir: str | None = None


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
    price_per_hour: float | None = None  # of one node
    extra: dict = field(default_factory=dict)
    # Node 0 (the box itself, the coordinator of a multi-node run) is the
    # fields above; its address inside the box's network:
    private_ip: str | None = None
    # The box's other nodes, 1..N-1, in order; empty for a box of one node.
    nodes: list[Node] = field(default_factory=list)

    @property
    def sandbox(self) -> bool:
        return self.endpoint_url is not None

    @property
    def node_count(self) -> int:
        return 1 + len(self.nodes)

    def node_list(self) -> list[Node]:
        """Every node, node 0 first (node 0 from the box's own fields)."""
        first = Node(0, self.instance_id, self.ssh_host, self.ssh_port, self.private_ip, self.public_ip, None)
        return [first, *self.nodes]

    def node(self, index: int) -> BoxState:
        """The box as seen on node ``index``: a copy whose instance and address are that node's,
        for everything that reaches one box (ssh, host keys, a remote target)."""
        if not 0 <= index < self.node_count:
            raise UsageError(
                f"box '{self.name}' has {self.node_count} node(s): no node {index}",
                f"pass --node 0..{self.node_count - 1}",
            )
        if index == 0:
            return dataclasses.replace(self, nodes=[])
        n = self.nodes[index - 1]
        return dataclasses.replace(
            self,
            instance_id=n.instance_id,
            ssh_host=n.ssh_host,
            ssh_port=n.ssh_port,
            private_ip=n.private_ip,
            public_ip=n.public_ip,
            workdir=n.workdir or self.workdir,
            nodes=[],
        )

    def set_node(self, node: Node) -> None:
        """Record one node's instance and addresses (node 0: the box's own fields)."""
        if node.index == 0:
            self.instance_id, self.ssh_host, self.ssh_port = node.instance_id, node.ssh_host, node.ssh_port
            self.private_ip, self.public_ip = node.private_ip, node.public_ip
            if node.workdir:
                self.workdir = node.workdir
            return
        others = {n.index: n for n in self.nodes}
        others[node.index] = node
        self.nodes = [others[i] for i in sorted(others)]


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
        node_fields = {f.name for f in dataclasses.fields(Node)}
        box.nodes = [Node(**{k: v for k, v in n.items() if k in node_fields}) for n in data.get("nodes") or []]
        _check(box, name, str(f))
    except (OSError, ValueError, TypeError, AttributeError, UsageError) as e:
        why = e.what if isinstance(e, UsageError) else f"{type(e).__name__}: {e}"
        raise CorruptState(
            f"the state file {f} is corrupt ({why})",
            f"remove it (AWS tags are the truth: `python -m provision down{flag}` works without it)",
        ) from None
    return box


def _check(box: BoxState, name: str, source: str) -> None:
    """What reaches ssh_config, shell commands and paths must be what trainbox wrote."""
    if box.name != name:
        raise UsageError(f"it names the box {box.name!r}")
    for key in ("region", "instance_id", "instance_type", "ssh_host", "ssh_user", "key_path", "workdir"):
        checks.plain(getattr(box, key), key)
    for key in ("python", "endpoint_url", "public_ip", "private_ip"):
        if getattr(box, key) is not None:
            checks.plain(getattr(box, key), key)
    checks.port(box.ssh_port, "ssh_port")
    for i, node in enumerate(box.nodes, start=1):
        if node.index != i:
            raise UsageError(f"its nodes are not numbered 1..{len(box.nodes)} in order")
        for key in ("instance_id", "ssh_host"):
            checks.plain(getattr(node, key), f"node {i}'s {key}")
        for key in ("private_ip", "public_ip", "workdir"):
            if getattr(node, key) is not None:
                checks.plain(getattr(node, key), f"node {i}'s {key}")
        checks.port(node.ssh_port, f"node {i}'s ssh_port")


def forget(name: str) -> None:
    _file(name).unlink(missing_ok=True)


def names() -> list[str]:
    return sorted(p.stem for p in paths.state_dir().glob("*.json") if _valid(p.stem))


def known() -> list[tuple[str, bool]]:
    """The boxes this laptop knows, each with whether it is a sandbox box (a corrupt state: not said)."""
    found = []
    for name in names():
        try:
            box = load(name)
        except CorruptState:
            box = None
        found.append((name, box is not None and box.sandbox))
    return found


def _valid(name: str) -> bool:
    try:
        checks.box_name(name)
    except UsageError:
        return False
    return True


def no_box(name: str, otherwise: str = "") -> UsageError:
    """No box called name is up: the error names the boxes this laptop knows (its state), and
    says to pass one of them or start one (``otherwise``: another way out, e.g. ``--host``)."""
    others = [(n, sandboxed) for n, sandboxed in known() if n != name]
    start = f"start one with `python -m provision up{name_flag(name)}`" + (f" ({otherwise})" if otherwise else "")
    if not others:
        return UsageError(f"no box named '{name}' is up", start)
    listed = ", ".join(n + (" (sandbox)" if sandboxed else "") for n, sandboxed in others)
    pick = f"pass --name {others[0][0]}" if len(others) == 1 else "pass --name with one of them"
    return UsageError(f"no box '{name}' here; known: {listed}", f"{pick}, or {start}")
