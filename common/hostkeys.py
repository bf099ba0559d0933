"""Pinned SSH host keys, in trainbox's own known_hosts file.

A provisioned box's key is read from its console output when AWS has it
(cloud-init prints the host keys there at first boot), else pinned on first
use with its fingerprint printed. A later mismatch is always an error.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from . import paths

_BLOCK = re.compile(r"-----BEGIN SSH HOST KEY KEYS-----(.*?)-----END SSH HOST KEY KEYS-----", re.S)


def host_entry(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key_line: str) -> str:
    """SHA256 fingerprint as OpenSSH prints it, of "type base64" text."""
    blob = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def keys_from_console(output: str) -> list[str]:
    m = _BLOCK.search(output or "")
    if not m:
        return []
    return [" ".join(line.split()[:2]) for line in m.group(1).strip().splitlines() if line.strip()]


def pin(host: str, port: int, key_lines: list[str], file: Path | None = None) -> None:
    """Make key_lines the only keys known for host:port."""
    file = file or paths.known_hosts()
    entry = host_entry(host, port)
    with paths.locked(file):  # the nodes of a multi-node run are pinned from parallel threads
        kept = [l for l in file.read_text().splitlines() if l.split(" ", 1)[0] != entry] if file.exists() else []
        kept += [f"{entry} {k}" for k in key_lines]
        paths.write_atomic(file, "".join(l + "\n" for l in kept))


def forget(host: str, port: int, file: Path | None = None) -> None:
    pin(host, port, [], file)


def pinned(host: str, port: int, file: Path | None = None) -> list[str]:
    """The keys ("type base64") pinned for host:port; lines that are not "entry type key" are ignored."""
    file = file or paths.known_hosts()
    entry = host_entry(host, port)
    out = []
    for line in file.read_text().splitlines() if file.exists() else []:
        parts = line.split()
        if len(parts) >= 3 and parts[0] == entry:
            out.append(f"{parts[1]} {parts[2]}")
    return out


def move(old: tuple[str, int], new: tuple[str, int], file: Path | None = None) -> list[str]:
    """The box moved (a stop and start gives it a new IP): its pinned keys go
    with it to the new address, and the old address, soon someone else's,
    keeps none. The keys moved ([] if none was pinned)."""
    if old == new or not old[0]:
        return pinned(*new, file=file)
    keys = pinned(*old, file=file)
    if keys:
        pin(*new, keys, file)
    forget(*old, file)
    return keys


def scan(host: str, port: int, timeout: float = 10.0) -> list[str]:
    """The host key the SSH server at host:port presents ("type base64").

    Used for first-use pinning, right after the box boots: the key is read
    once and pinned, and every later connection must present the same one.
    """
    import socket

    import paramiko

    from .errors import RemoteError

    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            transport = paramiko.Transport(sock)
            try:
                transport.start_client(timeout=timeout)
                key = transport.get_remote_server_key()
            finally:
                transport.close()
    except (OSError, EOFError, paramiko.SSHException) as e:
        raise RemoteError(
            f"could not read the SSH host key of {host}:{port} ({type(e).__name__}: {e})",
            "check `python -m provision state`, then retry `up`",
        ) from e
    return [f"{key.get_name()} {key.get_base64()}"]
