"""The OpenSSH command lines trainbox runs, built by pure functions.

Nothing here runs anything: the CLI execs what these return, and the tests
read them whole.
"""
from __future__ import annotations

import shlex

from .state import BoxState

JUPYTER_PORT = 8888


def ssh_options(box: BoxState, known_hosts: str) -> list[str]:
    """The options every trainbox ssh uses, each with its reason."""
    return [
        "-i", box.key_path,
        "-p", str(box.ssh_port),
        # Only the box's own key: an agent full of keys can exhaust
        # MaxAuthTries before the right one is offered.
        "-o", "IdentitiesOnly=yes",
        # The host key is pinned by trainbox: never accept another one.
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        # Notice a dead connection (laptop asleep, box stopped) within a minute.
        "-o", "ServerAliveInterval=15",
    ]


def ssh_argv(ssh: str, box: BoxState, known_hosts: str, extra: list[str], options: list[str] = ()) -> list[str]:
    """``ssh [trainbox options] [options] user@host [extra...]``."""
    return [ssh, *ssh_options(box, known_hosts), *options, f"{box.ssh_user}@{box.ssh_host}", *extra]


def box_python(box: BoxState) -> str:
    """The interpreter of trainbox's environment on the box (relative: to the home)."""
    return box.python or f"{box.workdir}/env/bin/python"


def jupyter_dir(box: BoxState) -> str:
    return f"{box.workdir}/jupyter"


def jupyter_start_command(python: str, port: int, state_dir: str, token: str) -> str:
    """A shell command for the box: start Jupyter Lab detached unless it already runs.

    Jupyter listens on 127.0.0.1 only (it is reached through the SSH tunnel;
    the security group never opens its port). The command prints the token
    of the running server on its last line: the new one, or the one saved
    when an earlier ``nb`` started it. Exit 3: Jupyter is not installed.
    """
    d, py = shlex.quote(state_dir), shlex.quote(python)
    lab = [python, "-m", "jupyter", "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    return "\n".join([
        "set -u",
        f"mkdir -p {d}",
        f'if [ -s {d}/pid ] && kill -0 "$(cat {d}/pid)" 2>/dev/null; then cat {d}/token; exit 0; fi',
        f"if ! {py} -c 'import jupyterlab' 2>/dev/null; then",
        f"  echo 'Jupyter Lab is not installed in the box environment ({python}): install it there with `{python} -m pip install jupyterlab`' >&2",
        "  exit 3",
        "fi",
        f"umask 077; printf '%s\\n' {shlex.quote(token)} > {d}/token",
        # setsid + nohup: the server outlives this SSH session.
        f"setsid nohup {' '.join(shlex.quote(a) for a in lab)} > {d}/log 2>&1 < /dev/null &",
        f"echo $! > {d}/pid",
        f"cat {d}/token",
    ])


def tunnel_argv(ssh: str, box: BoxState, known_hosts: str, port: int, local_port: int | None = None) -> list[str]:
    """``ssh -N -L LOCAL:127.0.0.1:PORT``: the laptop's port to Jupyter on the box's loopback."""
    local = local_port or port
    return ssh_argv(
        ssh, box, known_hosts, [],
        options=[
            "-N",  # no remote command: only the forward
            "-L", f"127.0.0.1:{local}:127.0.0.1:{port}",  # loopback on both ends
            "-o", "ExitOnForwardFailure=yes",  # a taken local port is an error, not a silent no-op
        ],
    )
