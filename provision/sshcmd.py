"""The OpenSSH command lines trainbox runs, built by pure functions.

Nothing here runs anything: the CLI execs what these return, and the tests
read them whole.
"""

from __future__ import annotations

from box.layout import BoxLayout
from common import openssh
from common.state import BoxState

JUPYTER_PORT = 8888


def ssh_argv(
    ssh: str, box: BoxState, known_hosts: str, extra: list[str], options: list[str] | tuple[str, ...] = ()
) -> list[str]:
    """``ssh [trainbox options] [options] user@host [extra...]`` for box (common/openssh.py)."""
    return openssh.argv(
        ssh, box.ssh_user, box.ssh_host, box.ssh_port, box.key_path, known_hosts, options=options, command=extra
    )


def env_python(box: BoxState) -> str:
    """The interpreter of trainbox's environment on the box (relative: to the home)."""
    return box.python or BoxLayout(box.workdir).env_python


def jupyter_start_script(
    python: str, port: int, state_dir: str, token: str, env: str | None = None, root_dir: str | None = None
) -> str:
    """A bash script for the box's stdin (templates/jupyter-start.sh.j2): start Jupyter Lab detached unless it already runs.

    It goes to ``bash -s`` on stdin, never on a command line, because it
    carries the token: command lines are visible to every user of the box
    (`ps`). Jupyter reads the token from a 0600 file (JUPYTER_TOKEN_FILE).
    Jupyter listens on 127.0.0.1 only (it is reached through the SSH tunnel;
    the security group never opens its port). The script waits until the
    server is up, and prints ``PORT TOKEN`` of the running server on its last
    line: the new one, or the one an earlier ``nb`` started. Exit 3: Jupyter
    is not installed; exit 4: it did not start (the reason from its log).

    ``env``: trainbox's environment link. Jupyter then runs from the version
    it points at and holds a shared lock on that version's ready marker, as a
    training job does, so a rebuild for other pins never removes it from
    under the server (remote/setup.py, templates/run.sh.j2).

    ``root_dir``: where the notebook opens (the pushed project of the latest
    `remote run`); the home when it is not there.
    """
    import templates

    lab = ["-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port), "--ServerApp.port_retries=0"]
    return templates.render(
        "jupyter-start.sh.j2",
        python=python,
        port=int(port),
        state_dir=state_dir,
        token=token,
        env=env,
        lab=lab,
        root_dir=root_dir,
    )


def tunnel_argv(ssh: str, box: BoxState, known_hosts: str, port: int, local_port: int | None = None) -> list[str]:
    """``ssh -N -L LOCAL:127.0.0.1:PORT``: the laptop's port to Jupyter on the box's loopback."""
    local = local_port or port
    return ssh_argv(
        ssh,
        box,
        known_hosts,
        [],
        options=[
            "-N",  # no remote command: only the forward
            "-L",
            f"127.0.0.1:{local}:127.0.0.1:{port}",  # loopback on both ends
            "-o",
            "ExitOnForwardFailure=yes",  # a taken local port is an error, not a silent no-op
        ],
    )
