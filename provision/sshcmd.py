"""The OpenSSH command lines trainbox runs, built by pure functions.

Nothing here runs anything: the CLI execs what these return, and the tests
read them whole.
"""
from __future__ import annotations

import shlex

from box.layout import BoxLayout
from common import openssh
from common.state import BoxState

JUPYTER_PORT = 8888


def ssh_argv(ssh: str, box: BoxState, known_hosts: str, extra: list[str], options: list[str] = ()) -> list[str]:
    """``ssh [trainbox options] [options] user@host [extra...]`` for box (common/openssh.py)."""
    return openssh.argv(ssh, box.ssh_user, box.ssh_host, box.ssh_port, box.key_path, known_hosts,
                        options=options, command=extra)


def box_python(box: BoxState) -> str:
    """The interpreter of trainbox's environment on the box (relative: to the home)."""
    return box.python or BoxLayout(box.workdir).env_python


def jupyter_start_script(python: str, port: int, state_dir: str, token: str, env: str | None = None) -> str:
    """A bash script for the box's stdin: start Jupyter Lab detached unless it already runs.

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
    """
    d = shlex.quote(state_dir)
    lab = ["-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
           "--ServerApp.port_retries=0"]
    if env:
        pick = [f'envdir=$(readlink -f {shlex.quote(env)}) || envdir={shlex.quote(env)}', 'py="$envdir/bin/python"']
        # exec keeps fd 8 (the lock) open in Jupyter itself: the lock lives exactly as long as the server.
        launch = ("bash -c 'exec 8<\"$0/trainbox-ready\" && flock -s 8 && exec \"$@\"' \"$envdir\" \"$py\" "
                  + " ".join(shlex.quote(a) for a in lab))
    else:
        pick = [f"py={shlex.quote(python)}"]
        launch = '"$py" ' + " ".join(shlex.quote(a) for a in lab)
    return "\n".join([
        "set -u",
        "umask 077",
        *pick,
        f"d=$(mkdir -p {d} && cd {d} && pwd) || exit 4",
        # A pid file survives a stop/start of the instance; the pid may then be
        # another process's: only a live Jupyter counts.
        'pid=$(cat "$d/pid" 2>/dev/null)',
        'if [ -n "$pid" ] && ps -o args= -p "$pid" 2>/dev/null | grep -q jupyter; then',
        '  echo "$(cat "$d/port") $(cat "$d/token")"; exit 0',
        "fi",
        """if ! "$py" -c 'import jupyterlab' 2>/dev/null; then""",
        "  echo \"Jupyter Lab is not installed in the box environment ($py): install it there with \\`$py -m pip install jupyterlab\\`\" >&2",
        "  exit 3",
        "fi",
        # No trailing newline: Jupyter takes the file's content as the token.
        f'printf %s {shlex.quote(token)} > "$d/token"',
        f'echo {port} > "$d/port"',
        'rm -rf "$d/runtime"',
        "unset JUPYTER_TOKEN",
        # A root login (an on-prem box, the sandbox run as root) is the user's choice.
        'extra=; [ "$(id -u)" = 0 ] && extra=--allow-root',
        # setsid + nohup: the server outlives this SSH session.
        'JUPYTER_TOKEN_FILE="$d/token" JUPYTER_RUNTIME_DIR="$d/runtime" \\',
        f'  setsid nohup {launch} $extra > "$d/log" 2>&1 < /dev/null &',
        'pid=$!; echo $pid > "$d/pid"',
        # Jupyter writes its runtime file once it listens: wait for that, or its death.
        "for _ in $(seq 1200); do",
        '  if ls "$d"/runtime/jpserver-*.json >/dev/null 2>&1; then echo "' + str(port) + ' $(cat "$d/token")"; exit 0; fi',
        '  if ! kill -0 $pid 2>/dev/null; then',
        '    echo "Jupyter did not start: $(grep -v \'^ *$\' "$d/log" | tail -n 1) (log: $d/log)" >&2; exit 4',
        "  fi",
        "  sleep 0.1",
        "done",
        'echo "Jupyter did not answer within 120 s (log: $d/log)" >&2; exit 4',
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
