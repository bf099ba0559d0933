"""The one builder of OpenSSH client command lines (provision's ``ssh``, ``nb``
tunnel and the sandbox checks; remote's bulk push in sync.py).

A pure function: nothing here runs anything. Every option carries its reason.
"""

from __future__ import annotations


def argv(
    ssh: str,
    user: str,
    host: str,
    port: int,
    key: str,
    known_hosts: str,
    *,
    batch: bool = False,
    options: list[str] | tuple[str, ...] = (),
    command: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """``ssh [trainbox's options] [options] user@host [command...]``.

    batch: for a program, not a person (remote's bulk stream): never prompt,
    read no configuration or key but trainbox's own, give up on a dead
    address quickly. Without it the user's ~/.ssh/config still applies (an
    interactive ``provision ssh`` honours their settings).
    """
    out = [
        ssh,
        "-i",
        key,
        "-p",
        str(port),
        # Only the box's own key: an agent full of keys can exhaust
        # MaxAuthTries before the right one is offered.
        "-o",
        "IdentitiesOnly=yes",
        # The host key is pinned by trainbox: never accept another one.
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        # Notice a dead connection (laptop asleep, box stopped) within a minute.
        "-o",
        "ServerAliveInterval=15",
    ]
    if batch:
        out += [
            # The pinned key only: not one the system's known_hosts may hold.
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            # Never prompt (a password, a passphrase, an unknown host): fail instead.
            "-o",
            "BatchMode=yes",
            # No agent at all: the key file is the one identity.
            "-o",
            "IdentityAgent=none",
            # A box that does not answer fails within seconds, not TCP's minutes.
            "-o",
            "ConnectTimeout=15",
            # No user ssh config in the way (a ProxyCommand, another User...).
            "-F",
            "/dev/null",
        ]
    return [*out, *options, f"{user}@{host}", *command]
