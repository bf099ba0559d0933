"""`nb` end to end: the real CLI starts a real Jupyter Lab on the sandbox's box
(a real sshd on 127.0.0.1) and opens a real OpenSSH tunnel to it; `down`
stops the server. Nothing here connects anywhere but 127.0.0.1."""

from __future__ import annotations

import json
import re
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
import venv
from pathlib import Path

import pytest
from pvkit import run_ssh, sandbox_box  # noqa: F401

from box.layout import BoxLayout
from common import procs, state
from common.errors import EX_INTERRUPTED, CloudError, UsageError
from common.procs import free_port
from testkit import listening, processes_mentioning, refused, run_cli, start_cli, wait_for

pytestmark = pytest.mark.slow  # a real Jupyter Lab starts (seconds)

URL = re.compile(r"http://127\.0\.0\.1:(\d+)/lab\?token=(\w+)")


def get(url: str, token: str | None = None) -> tuple[int, bytes] | None:
    """(status, body) of a GET, or None while nothing answers on the port."""
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError):
        return None


def answered(url: str, token: str):
    """A check for wait_for: the answer once Jupyter answers through the tunnel."""

    def check():
        got = get(url, token)
        return got if got and got[0] != 502 else None

    return check


def start_nb(tmp_path: Path, port: int, local: int | None) -> tuple[subprocess.Popen, str, int]:
    """`python -m provision nb` in a subprocess; returns it (now the tunnel), the
    token and the local port it printed."""
    out = tmp_path / f"nb-{local}.out"
    more = ["--local-port", str(local)] if local else []
    proc = start_cli("provision", "nb", "--port", str(port), *more, out=out)

    def printed():
        m = URL.search(out.read_text())
        if m is None and proc.poll() is not None:
            raise AssertionError(f"nb exited {proc.returncode}: {Path(f'{out}.err').read_text()}")
        return m

    m = wait_for("nb to print the notebook's URL", printed)
    assert local is None or int(m.group(1)) == local
    return proc, m.group(2), int(m.group(1))


@pytest.fixture
def jupyter_box(sandbox_box):
    """The sandbox box, its `python` pointed at an interpreter that has Jupyter Lab."""
    sandbox_box.python = sys.executable  # the dev extra installs jupyterlab here
    state.save(sandbox_box)
    assert subprocess.run([sandbox_box.python, "-c", "import jupyterlab"]).returncode == 0
    return sandbox_box


def test_nb_serves_jupyter_through_the_tunnel_reuses_it_and_down_stops_it(jupyter_box, tmp_path):
    port, local = free_port(), free_port()
    d = Path(BoxLayout(jupyter_box.workdir).jupyter)
    tunnels = []
    try:
        proc, token, _ = start_nb(tmp_path, port, local)
        tunnels.append(proc)
        code, body = wait_for(
            "Jupyter to answer through the tunnel", answered(f"http://127.0.0.1:{local}/api/status", token)
        )
        assert code == 200 and "started" in json.loads(body)
        assert get(f"http://127.0.0.1:{local}/api/status")[0] in (401, 403), "answered without the token"
        assert get(f"http://127.0.0.1:{local}/api/status", "wrong-token")[0] in (401, 403)

        pid = int((d / "pid").read_text())
        # Jupyter listens on the box's loopback only, on the port asked for.
        assert listening(pid) == {("127.0.0.1", port)}
        # The token is in no process's command line (`ps` shows those to every
        # user of the box), nor in the server's environment: a 0600 file holds it.
        assert token not in Path(f"/proc/{pid}/cmdline").read_text()
        assert token not in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        assert processes_mentioning(token) == [], "the token is on a command line"
        token_file = d / "token"
        assert token_file.read_text() == token and stat.S_IMODE(token_file.stat().st_mode) == 0o600

        # A second `nb` reuses the running server and its token. Its local port
        # defaults to the box's, which here (the box is this machine) Jupyter
        # itself holds, as a laptop's own Jupyter often holds 8888: another is used.
        proc2, token2, local2 = start_nb(tmp_path, port, None)
        tunnels.append(proc2)
        assert token2 == token
        assert local2 not in (port, local)
        code, _ = wait_for("the second tunnel to answer", answered(f"http://127.0.0.1:{local2}/api/status", token))
        assert code == 200
        assert int((d / "pid").read_text()) == pid
        servers = [p for p in processes_mentioning(f"--port {port}") if "jupyter" in p]
        assert len(servers) == 1, f"not exactly one Jupyter: {servers}"

        # `down` with the tunnels still open: the box goes, and everything on it.
        down = run_cli("provision", "down", "--yes", "--no-pull")
        assert down.code == 0, down.err
        assert not procs.alive(pid)
        # Nothing of the box's is left; the tunnels' own CLIs (`nb --port N`) end with it, waited for below.
        ours = {str(t.pid) for t in tunnels}
        assert [p for p in processes_mentioning(f"--port {port}") if p.split(":")[0] not in ours] == []
        # A terminated instance ends its SSH sessions: each tunnel sees its
        # connection closed and exits by itself.
        for t in tunnels:
            wait_for("the tunnel to close with the box", lambda t=t: t.poll() is not None, timeout=60)
    finally:
        for t in tunnels:
            if t.poll() is None:
                t.terminate()
            t.wait(timeout=30)


def test_ctrl_c_closes_the_tunnel_says_so_and_exits_130_jupyter_kept(jupyter_box, tmp_path):
    port, local = free_port(), free_port()
    proc, token, _ = start_nb(tmp_path, port, local)
    try:
        wait_for("Jupyter to answer through the tunnel", answered(f"http://127.0.0.1:{local}/api/status", token))
        pid = int((Path(BoxLayout(jupyter_box.workdir).jupyter) / "pid").read_text())
        # What Ctrl-C sends, to the CLI process alone: the tunnel's ssh is its own to close.
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == EX_INTERRUPTED
        err = (tmp_path / f"nb-{local}.out.err").read_text()
        assert "notebook tunnel closed (Jupyter keeps running on the box)" in err, err
        assert "error" not in err and "interrupted" not in err, err
        assert refused(local), "the tunnel still listens"
        assert processes_mentioning(f"127.0.0.1:{local}:127.0.0.1:{port}") == [], "the tunnel's ssh is left"
        # Jupyter is the box's: it still answers there (the box's loopback is this machine's).
        assert procs.alive(pid) and get(f"http://127.0.0.1:{port}/api/status", token)[0] == 200
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=30)


def test_a_taken_local_port_asked_for_is_exit_2_before_anything_starts(jupyter_box):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        local = taken.getsockname()[1]
        r = run_cli("provision", "nb", "--port", str(free_port()), "--local-port", str(local))
    assert r.code == UsageError.exit_code, r.err
    (line,) = [l for l in r.err.splitlines() if l.startswith("error:")]
    assert f"local port {local} is taken" in line and "--local-port" in line
    assert not Path(BoxLayout(jupyter_box.workdir).jupyter, "pid").exists(), "Jupyter was started anyway"


def test_jupyter_that_cannot_start_is_one_line_with_its_log(jupyter_box, tmp_path):
    """The port on the box is taken: `nb` fails at once, naming Jupyter's own reason."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_cli("provision", "nb", "--port", str(port), "--local-port", str(free_port()), timeout=180)
    assert r.code == CloudError.exit_code, r.err
    (line,) = [l for l in r.err.splitlines() if l.startswith("error:")]
    assert "Jupyter did not start" in line and "port" in line.lower()
    assert "http://" not in r.out  # no URL for a server that is not there


def test_missing_jupyter_is_exit_3_with_the_fix(jupyter_box, tmp_path):
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)  # a real interpreter without jupyterlab
    jupyter_box.python = str(bare / "bin" / "python")
    state.save(jupyter_box)
    r = run_cli("provision", "nb", "--port", str(free_port()))
    assert r.code == CloudError.exit_code
    assert "pip install jupyterlab" in r.err and "Traceback" not in r.err


def test_jupyter_in_trainbox_env_holds_its_version_against_a_rebuild(sandbox_box, tmp_path):
    """With no `python` override, Jupyter runs from the version the box's `env`
    link points at and holds a shared lock on its ready marker, as a training
    job does: a rebuild (which needs that lock exclusively) cannot remove it."""
    import site
    import sysconfig

    workdir = Path(sandbox_box.workdir)
    version = workdir / "envs" / "v1"
    venv.create(version, with_pip=False)  # a real venv; the dev extra's site-packages (jupyterlab) added by a .pth
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(version), "platbase": str(version)}))
    (purelib / "laptop.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    marker = version / "trainbox-ready"
    marker.write_text("ready\n")
    (workdir / "env").symlink_to(version)
    sandbox_box.python = None  # the sandbox points at the laptop's interpreter; a real box uses its env
    state.save(sandbox_box)

    port, local = free_port(), free_port()
    proc, token, _ = start_nb(tmp_path, port, local)
    try:
        code, _ = wait_for("Jupyter to answer", answered(f"http://127.0.0.1:{local}/api/status", token))
        assert code == 200
        pid = int((Path(BoxLayout(sandbox_box.workdir).jupyter) / "pid").read_text())
        exe = Path(f"/proc/{pid}/cmdline").read_text().split("\0")[0]
        assert exe == f"{version}/bin/python", "Jupyter runs from the linked version"
        held = subprocess.run(["flock", "-n", "-x", str(marker), "true"])
        assert held.returncode == 1, "the server holds the version's lock"
        procs.terminate(pid)
        assert subprocess.run(["flock", "-n", "-x", str(marker), "true"]).returncode == 0, "released with the server"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
