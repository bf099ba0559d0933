"""Which box a remote command talks to: a provisioned one, or any SSH host."""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from pathlib import Path

from box.layout import DEFAULT_WORKDIR
from common import cluster, state
from common.errors import UsageError
from common.state import no_box

_HOST = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    user: str
    identity: str | None
    workdir: str = DEFAULT_WORKDIR
    python: str | None = None
    box: str | None = None  # the provisioned box's name; None for --host
    sandbox: bool = False
    # Where the box's other nodes reach this one (its VPC address); None: host.
    private_address: str | None = None

    @property
    def label(self) -> str:
        return self.box or f"{self.user}@{self.host}:{self.port}"


def parse_host(text: str) -> tuple[str | None, str, int]:
    m = _HOST.match(text.strip())
    if not m:
        raise UsageError(f"--host {text!r} is not [user@]host[:port]")
    return m.group("user"), m.group("host").strip("[]"), int(m.group("port") or 22)


def resolve(
    name: str,
    host: str | None = None,
    identity: str | None = None,
    python: str | None = None,
    workdir: str | None = None,
) -> Target:
    """The target: ``--host`` (+ ``--identity``) if given, else box ``name``'s state."""
    if identity and not Path(identity).expanduser().exists():
        raise UsageError(f"--identity {identity}: no such file")
    if host:
        user, h, port = parse_host(host)
        return Target(
            host=h,
            port=port,
            user=user or getpass.getuser(),
            identity=str(Path(identity).expanduser()) if identity else None,
            workdir=workdir or DEFAULT_WORKDIR,
            python=python,
        )
    box = state.load(name)
    if box is None:
        raise no_box(name, "or pass --host [user@]host[:port]")
    return Target(
        host=box.ssh_host,
        port=box.ssh_port,
        user=box.ssh_user,
        identity=identity or box.key_path,
        workdir=workdir or box.workdir,
        python=python or box.python,
        box=box.name,
        sandbox=box.sandbox,
    )


def box_nodes(name: str, identity: str | None = None, python: str | None = None) -> list[Target]:
    """Every node of provisioned box ``name`` as a target, node 0 first (one for a box of one node)."""
    box = state.load(name)
    if box is None:
        raise no_box(name, "or pass one --host per node")
    return [
        Target(
            host=n.host,
            port=n.port,
            user=n.user,
            identity=identity or n.key_path,
            workdir=n.workdir,
            python=python or n.python,
            box=box.name,
            sandbox=box.sandbox,
            private_address=n.private_address,
        )
        for n in cluster.addresses(box)
    ]


def box_node_count(name: str) -> int:
    """How many nodes provisioned box ``name`` has (1 when there is no such box: resolve says so)."""
    box = state.load(name)
    return box.node_count if box is not None else 1
