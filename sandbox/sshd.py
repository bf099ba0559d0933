"""A real OpenSSH sshd on 127.0.0.1, started from a private config, no root needed.

The sandbox's "instance" is one of these, and so is every SSH test's host.
It is OpenSSH itself rather than a Python SSH server: the exact daemon that
runs on the Deep Learning AMI, with its real exec, sftp and session
semantics (a detached job must outlive the SSH session that started it).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from common import paths, procs
from common.errors import TrainboxError

CONFIG = """\
# trainbox sandbox sshd: loopback only, key auth only.
ListenAddress 127.0.0.1
Port {port}
HostKey {dir}/host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
# No PAM: a private sshd started by a normal user cannot use it.
UsePAM no
# The temp dirs these files live in are not root-owned.
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers {users}
Subsystem sftp internal-sftp
ClientAliveInterval 15
MaxStartups 100:30:200
MaxSessions 50
LogLevel INFO
"""


@dataclass(frozen=True)
class SshServer:
    dir: Path
    port: int
    pid: int
    host_key: str  # "ssh-ed25519 AAAA..." (the public half, to pin)

    @property
    def host_keys(self) -> tuple[str, ...]:
        return (self.host_key,)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def sshd_binary() -> str:
    for candidate in (shutil.which("sshd"), "/usr/sbin/sshd", "/usr/local/sbin/sshd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise TrainboxError(
        "OpenSSH's sshd is not installed (the sandbox's box is a real sshd on 127.0.0.1)",
        "install it: `sudo apt-get install -y openssh-server` (or your OS's package)",
    )


def new_private_key() -> tuple[str, str]:
    """A fresh ed25519 key: (OpenSSH private key text, public key line)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, public


def public_key_line(private_key_file: Path) -> str:
    """The authorized_keys line of a private key file (any type paramiko reads)."""
    import paramiko

    key = None
    for cls in (paramiko.Ed25519Key, paramiko.RSAKey, paramiko.ECDSAKey):
        try:
            key = cls.from_private_key_file(str(private_key_file))
            break
        except paramiko.SSHException:
            continue
    if key is None:
        raise TrainboxError(f"cannot read the private key {private_key_file}")
    return f"{key.get_name()} {key.get_base64()}"


def _info_file(d: Path) -> Path:
    return d / "server.json"


def running(d: Path) -> SshServer | None:
    f = _info_file(d)
    if not f.exists():
        return None
    info = json.loads(f.read_text())
    server = SshServer(Path(info["dir"]), info["port"], info["pid"], info["host_key"])
    return server if procs.alive(server.pid) else None


def start(d: Path, authorized_keys: list[str], port: int | None = None, users: list[str] | None = None) -> SshServer:
    """Start (or find running) an sshd whose files live in ``d``.

    The host key is made once and kept, so a stopped and restarted box keeps
    the fingerprint the laptop pinned; so is the port, when it is free.
    """
    d.mkdir(parents=True, exist_ok=True)
    existing = running(d)
    if existing:
        return existing
    host_key = d / "host_ed25519_key"
    if not host_key.exists():
        private, public = new_private_key()
        paths.write_private(host_key, private)
        (d / "host_ed25519_key.pub").write_text(public + "\n")
    public = (d / "host_ed25519_key.pub").read_text().strip()
    (d / "authorized_keys").write_text("".join(k.strip() + "\n" for k in authorized_keys))
    if os.geteuid() == 0:
        # sshd's privilege separation needs this directory when run as root.
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    binary = sshd_binary()
    last_log = ""
    for attempt in range(3):
        chosen = port if (port and attempt == 0) else procs.free_port()
        (d / "sshd_config").write_text(CONFIG.format(port=chosen, dir=d, users=" ".join(users or [getpass.getuser()])))
        log = d / "sshd.log"
        log.write_text("")
        pid = procs.spawn([binary, "-D", "-e", "-f", str(d / "sshd_config")], log)
        if procs.wait_for_port(chosen, pid, timeout=10):
            server = SshServer(d, chosen, pid, " ".join(public.split()[:2]))
            _info_file(d).write_text(
                json.dumps({"dir": str(d), "port": chosen, "pid": pid, "host_key": server.host_key})
            )
            return server
        procs.terminate(pid)
        last_log = (log.read_text().strip().splitlines() or [""])[-1]
    raise TrainboxError(f"the sandbox's sshd did not start ({last_log})", f"see {d / 'sshd.log'}")


def stop(d: Path) -> None:
    """Stop the sshd and end its open sessions, as a stopped instance would.

    Ending the listening daemon alone leaves every connection's own sshd
    running (a tunnel to a box that is gone would stay open).
    """
    server = running(d)
    if server:
        sessions = procs.descendants(server.pid)
        procs.terminate(server.pid)
        for pid in sessions:
            procs.terminate(pid)
    _info_file(d).unlink(missing_ok=True)
