"""Which box a remote command talks to: a provisioned one, or any SSH host."""
from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from pathlib import Path

from provision import state
from provision.errors import UsageError

_HOST = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    user: str
    identity: str | None
    workdir: str = "trainbox"
    python: str | None = None
    box: str | None = None  # the provisioned box's name; None for --host
    sandbox: bool = False

    @property
    def label(self) -> str:
        return self.box or f"{self.user}@{self.host}:{self.port}"


def parse_host(text: str) -> tuple[str | None, str, int]:
    m = _HOST.match(text.strip())
    if not m:
        raise UsageError(f"--host {text!r} is not [user@]host[:port]")
    return m.group("user"), m.group("host").strip("[]"), int(m.group("port") or 22)


def resolve(name: str, host: str | None = None, identity: str | None = None, python: str | None = None, workdir: str | None = None) -> Target:
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
            workdir=workdir or "trainbox",
            python=python,
        )
    box = state.load(name)
    if box is None:
        flag = "" if name == "default" else f" --name {name}"
        raise UsageError(
            f"no box named '{name}' is up",
            f"start one with `python -m provision up{flag}` (or pass --host [user@]host[:port])",
        )
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


def current(target: Target) -> Target:
    """target with its provisioned box's address as it is now (a box that was stopped
    and started, or brought back by its spot request, may have another IP or port).

    On AWS the address is asked of AWS (lifecycle.status refreshes the state);
    in the sandbox, `provision start` has written it into the state already.
    A --host target, or a box with no state any more, is returned as it is.
    """
    import dataclasses

    if not target.box:
        return target
    box = state.load(target.box)
    if box is None:
        return target
    if not box.sandbox:
        from provision import lifecycle

        from provision.errors import CloudError

        try:
            if lifecycle.status(lifecycle.cloud_of(box), box.name).state != "running":
                return target
        except CloudError:  # AWS unreachable from here now: try the address we have
            return target
        box = state.load(target.box) or box
    return dataclasses.replace(target, host=box.ssh_host, port=box.ssh_port)
