"""`remote tb` end to end on the sandbox's box (a real sshd on 127.0.0.1): a
real TensorBoard from the box's environment, a tunnel of the real CLI, and
`down`, which ends it. The event files are TensorBoard's own (its writer, in
its no-TensorFlow mode: a second). Nothing connects anywhere but 127.0.0.1."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pvkit import sandbox_box  # noqa: F401 (the fixture)

from box.layout import BoxLayout
from common import procs
from common.errors import CloudError
from testkit import http_get, listening, processes_mentioning, run_cli, start_cli, tb_runs, wait_for, write_tb_events

pytestmark = pytest.mark.slow  # TensorBoard starts (it imports TensorFlow: seconds)

URL = re.compile(r"TensorBoard on .*: http://127\.0\.0\.1:(\d+)/")


def start_tb(tmp_path: Path, name: str, *argv: str) -> tuple[subprocess.Popen, int]:
    """`remote tb ...` in a subprocess (now the tunnel); the local port it printed."""
    out = tmp_path / f"tb-{name}.out"
    proc = start_cli("remote", "tb", *argv, out=out)

    def printed():
        m = URL.search(out.read_text())
        if m is None and proc.poll() is not None:
            raise AssertionError(f"remote tb exited {proc.returncode}: {Path(f'{out}.err').read_text()}")
        return m

    return proc, int(wait_for("remote tb to print its URL", printed, timeout=180).group(1))


def test_tb_serves_the_boxs_runs_through_a_loopback_tunnel_and_down_stops_it(sandbox_box, tmp_path):
    layout = BoxLayout(sandbox_box.workdir)
    first, second = "20260101-000000-aaaa", "20260101-000000-bbbb"
    for run_id in (first, second):
        write_tb_events(Path(layout.run(run_id)) / "out" / "tensorboard" / "train")
    tunnels = []
    try:
        every, local = start_tb(tmp_path, "all")
        tunnels.append(every)
        page = wait_for("TensorBoard's page through the tunnel", lambda: http_get(f"http://127.0.0.1:{local}/"))
        assert b"<title>TensorBoard</title>" in page
        assert sorted(wait_for("the runs in TensorBoard", tb_runs(local))) == [
            f"{first}/out/tensorboard/train",
            f"{second}/out/tensorboard/train",
        ]

        d = Path(layout.tensorboard("all"))
        pid, started, box_port = (
            int((d / "pid").read_text()),
            (d / "pid-start").read_text(),
            int((d / "port").read_text()),
        )
        # TensorBoard listens on the box's loopback only; the tunnel on the laptop's.
        assert listening(pid) == {("127.0.0.1", box_port)}
        assert listening(every.pid) == {("127.0.0.1", local)}
        # The box is this machine: TensorBoard itself holds the box's port here, so the tunnel took another.
        assert local != box_port

        # A second `remote tb` of every run reuses the server; one of a run alone starts its own.
        again, local2 = start_tb(tmp_path, "again")
        tunnels.append(again)
        assert wait_for("the second tunnel", tb_runs(local2)) and int((d / "pid").read_text()) == pid
        one, local3 = start_tb(tmp_path, "one", second)
        tunnels.append(one)
        assert wait_for("the run's own server", tb_runs(local3)) == [f"{second}/tensorboard/train"]
        (own,) = [p for p in Path(layout.tensorboards).iterdir() if p.name != "all"]
        servers = [(pid, started), (int((own / "pid").read_text()), (own / "pid-start").read_text())]
        assert all(procs.recorded_alive(*s) for s in servers)

        # `down` with the tunnels open: the box goes, every TensorBoard on it, and each tunnel by itself.
        down = run_cli("provision", "down", "--yes", "--no-pull")
        assert down.code == 0, down.err
        assert not any(procs.recorded_alive(*s) for s in servers)
        assert processes_mentioning(layout.tensorboards) == []
        for t in tunnels:
            wait_for("the tunnel to end with the box", lambda t=t: t.poll() is not None, timeout=60)
            assert t.returncode == CloudError.exit_code
    finally:
        for t in tunnels:
            if t.poll() is None:
                t.terminate()
            t.wait(timeout=30)
    err = Path(tmp_path / "tb-all.out.err").read_text()
    assert "tunnel is down" in err and "Traceback" not in err
