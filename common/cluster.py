"""A provisioned box's nodes, as the remote side reaches them: node 0 first.

``provision up --nodes N`` records N instances in the box's state
(common/state.py: node 0 in the box's own fields, nodes 1..N-1 in ``nodes``).
A multi-node run needs, per node, where SSH reaches it (``host``, ``port``,
``user``, ``key_path``, ``workdir``) and where the other nodes reach it inside
the box's network (``private_address``: the coordinator listens on node 0's).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import state
from .state import no_box


@dataclass(frozen=True)
class NodeAddress:
    index: int
    host: str  # what SSH connects to from the laptop (public IP; 127.0.0.1 in the sandbox)
    port: int
    user: str
    key_path: str
    workdir: str  # trainbox's folder on that node (relative: to the login user's home)
    # Where the other nodes reach it: its VPC address (127.0.0.1 in the sandbox; the SSH
    # host for a state from before private addresses were recorded).
    private_address: str
    python: str | None = None  # the node's interpreter with the backend, if not trainbox's env

    @property
    def host_arg(self) -> str:
        """``user@host:port``, the form `remote ... --host` takes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"


def addresses(box: state.BoxState) -> list[NodeAddress]:
    """The box's nodes, node 0 first; one entry for a box of one node."""
    out = []
    for node in box.node_list():
        on = box.node(node.index)
        out.append(
            NodeAddress(
                index=node.index,
                host=on.ssh_host,
                port=on.ssh_port,
                user=on.ssh_user,
                key_path=on.key_path,
                workdir=on.workdir,
                private_address=node.private_ip or on.ssh_host,
                python=on.python,
            )
        )
    return out


def node_addresses(name: str) -> list[NodeAddress]:
    """Box ``name``'s nodes from its local state, node 0 first; UsageError if there is no box."""
    box = state.load(name)
    if box is None:
        raise no_box(name)
    return addresses(box)
