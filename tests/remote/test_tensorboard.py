"""`remote tb` on the session's sshd (--host) and `--local`; the sandbox flow
(the tunnel to a real TensorBoard on the box, `down`) is tests/provision/test_tb.py."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from box.layout import BoxLayout
from cli.remote_main import main as remote_main
from common import procs
from common.errors import UsageError
from remote import records
from remote.target import Target
from testkit import listening, one_line_error, processes_mentioning, start_cli, tb_runs, wait_for, write_tb_events

URL = re.compile(r"TensorBoard on .*: http://127\.0\.0\.1:(\d+)/")


def detached_sleep() -> int:
    """A process in its own session that init reaps, as the start script leaves TensorBoard; its pid."""
    out = subprocess.run(
        ["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def test_stop_ends_the_recorded_servers_and_nothing_else(cli, on_box, box, tmp_path):
    layout = BoxLayout(box.workdir)
    ours, other = detached_sleep(), detached_sleep()
    try:
        for key, pid, started in (
            ("all", ours, procs.start_time(ours)),
            # A pid file whose pid is now another program's (its start time differs): never signalled.
            ("runs-0123456789ab", other, "12345"),
        ):
            d = Path(layout.tensorboard(key))
            d.mkdir(parents=True)
            (d / "pid").write_text(f"{pid}\n")
            (d / "pid-start").write_text(f"{started}\n")
            (d / "port").write_text("6006\n")
        r = cli("remote", "tb", "--stop", *on_box, cwd=tmp_path)
        assert r.code == 0, r.err
        assert r.out.strip() == f"stopped 1 TensorBoard server(s) on {box.user}@127.0.0.1:{box.port}"
        assert not procs.alive(ours)
        assert procs.alive(other), "a pid that is no longer ours was signalled"
        assert list(Path(layout.tensorboards).glob("*/pid")) == []
    finally:
        for pid in (ours, other):
            if procs.alive(pid) and procs.start_time(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_taken_local_port_asked_for_is_exit_2_before_anything_starts(cli, on_box, box, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli("remote", "tb", "--local-port", str(port), *on_box, cwd=tmp_path)
    assert r.code == UsageError.exit_code
    line = one_line_error(r)
    assert f"local port {port} is taken" in line and "--local-port" in line
    assert not Path(BoxLayout(box.workdir).tensorboards).exists(), "TensorBoard was started anyway"


def test_a_run_that_is_not_on_the_box_is_exit_2_naming_it(cli, on_box, box, tmp_path):
    r = cli("remote", "tb", "20260101-000000-zzzz", *on_box, cwd=tmp_path)
    assert r.code == UsageError.exit_code
    assert "run 20260101-000000-zzzz is not on the box" in one_line_error(r)
    assert list(Path(BoxLayout(box.workdir).tensorboards).glob("*/pid")) == [], "TensorBoard was started anyway"


@pytest.mark.slow
def test_local_serves_the_pulled_runs_on_loopback_until_ctrl_c(tmp_path):
    target = Target("127.0.0.1", 2222, "ubuntu", None, "/srv/trainbox", box="default")
    run_id = "20260101-000000-aaaa"
    local = tmp_path / "runs" / run_id
    write_tb_events(local / "tensorboard" / "validation")
    records.new_record(run_id, target, local)
    records.new_record("20260101-000000-bbbb", target, tmp_path / "runs" / "never-pulled")
    out = tmp_path / "tb.out"
    proc = start_cli("remote", "tb", "--local", out=out)
    try:
        port = int(wait_for("the local URL", lambda: URL.search(out.read_text()) or proc.poll(), timeout=180).group(1))
        assert wait_for("the pulled run in TensorBoard", tb_runs(port)) == [f"{run_id}/tensorboard/validation"]
        (server,) = [int(l.split(":")[0]) for l in processes_mentioning(f"{run_id}:{local}")]
        assert procs.start_time(server) and listening(server) == {("127.0.0.1", port)}
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=60) == 0
        assert processes_mentioning(f"{run_id}:{local}") == [], "TensorBoard outlived the command"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_local_without_tensorboard_names_the_extra(tmp_path, monkeypatch, capsys):
    import importlib.util

    records.new_record("20260101-000000-aaaa", Target("127.0.0.1", 2222, "u", None, "w", box="default"), tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert remote_main(["tb", "--local"]) == UsageError.exit_code
    err = capsys.readouterr().err
    assert "lacks" in err and "pip install 'trainbox[view]'" in err and len(err.strip().splitlines()) == 1
