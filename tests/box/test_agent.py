"""box/agent.py: spot notices from an IMDSv2 stand-in on 127.0.0.1, and resumes at boot,
over real run folders whose run.sh the agent really starts (issue 13)."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest

from box import agent
from testkit import wait_for

# What a run's run.sh does, reduced to the contract the agent relies on: it
# writes its pid and this boot's id first and its exit code last.
RUN_SH = """#!/usr/bin/env bash
cd "$(dirname "$0")"
echo $$ > pid
echo {boot} > boot_id
echo run >> ran
echo 0 > exit_code.tmp && mv exit_code.tmp exit_code
"""


def run_folder(runs: Path, name: str, boot: str | None, finished=False, stopped=False, current="boot-now") -> Path:
    d = runs / name
    d.mkdir(parents=True)
    (d / "run.sh").write_text(RUN_SH.format(boot=current))
    (d / "pid").write_text("4242\n")  # a pid of an earlier boot: never read, never signalled
    if boot is not None:
        (d / "boot_id").write_text(boot + "\n")
    if finished:
        (d / "exit_code").write_text("0\n")
    if stopped:
        (d / "stopped").touch()
    return d


class ImdsStandIn:
    def __init__(self):
        self.notice: dict | None = None
        self.tokens: list[str] = []
        self.gets_without_token = 0


@pytest.fixture
def imds():
    state = ImdsStandIn()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code, body=b""):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self):
            if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return self._send(400)
            token = f"token-{len(state.tokens)}"
            state.tokens.append(token)
            self._send(200, token.encode())

        def do_GET(self):
            if self.headers.get("X-aws-ec2-metadata-token") not in state.tokens:
                state.gets_without_token += 1
                return self._send(401)
            if self.path != agent.NOTICE_PATH or state.notice is None:
                return self._send(404)
            self._send(200, json.dumps(state.notice).encode())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_boot_resumes_every_interrupted_run_and_only_those(tmp_path):
    runs = tmp_path / "runs"
    cut_a = run_folder(runs, "a", boot="boot-before")
    cut_b = run_folder(runs, "b", boot="boot-before")
    old = run_folder(runs, "old", boot=None)  # started before boot ids were written: interrupted too
    done = run_folder(runs, "done", boot="boot-before", finished=True)
    user_stopped = run_folder(runs, "stopped", boot="boot-before", stopped=True)
    this_boot = run_folder(runs, "now", boot="boot-now")  # died in this boot: not an interruption
    lines = []
    agent.Agent(str(runs), agent.Imds("http://127.0.0.1:9"), "boot-now", lines.append).at_boot()
    for d in (cut_a, cut_b, old):
        wait_for(f"{d.name} to run again", lambda d=d: (d / "exit_code").exists())
        assert (d / "ran").read_text() == "run\n"
        (event,) = agent.RunFolder(str(d)).events()
        assert event["event"] == "resumed" and event["at"] > 0
        assert (d / "boot_id").read_text().strip() == "boot-now"
    for d in (done, user_stopped, this_boot):
        assert not (d / "ran").exists()
    assert not (done / agent.EVENTS).exists() and not (this_boot / agent.EVENTS).exists()
    # The run the user stopped says so on the box, once per stop (not again at the next boot).
    assert [e["event"] for e in agent.RunFolder(str(user_stopped)).events()] == ["left-stopped"]
    assert lines[0] == "not resuming stopped: stopped by the user (`remote stop`)"
    assert len(lines) == 4 and not (runs / agent.RESUMING).exists()
    agent.Agent(str(runs), agent.Imds("http://127.0.0.1:9"), "boot-later", lines.append).at_boot()
    assert [e["event"] for e in agent.RunFolder(str(user_stopped)).events()] == ["left-stopped"]


def test_a_spot_notice_asks_each_going_run_to_save_once(tmp_path, imds):
    runs = tmp_path / "runs"
    going = run_folder(runs, "going", boot="boot-now")
    going2 = run_folder(runs, "going2", boot="boot-now")
    done = run_folder(runs, "done", boot="boot-now", finished=True)
    a = agent.Agent(str(runs), agent.Imds(imds.endpoint), "boot-now", lambda s: None)
    a.poll_once()
    assert not (going / agent.SAVE_REQUEST).exists() and imds.tokens == ["token-0"]
    imds.notice = {"action": "stop", "time": "2026-12-01T22:00:00Z"}
    a.poll_once()
    a.poll_once()  # AWS keeps answering with the same notice: acted on once
    for d in (going, going2):
        assert (d / agent.SAVE_REQUEST).exists()
        (event,) = agent.RunFolder(str(d)).events()
        assert event["event"] == "spot-notice" and event["notice"]["action"] == "stop"
    assert not (done / agent.SAVE_REQUEST).exists()
    assert imds.tokens == ["token-0"] and imds.gets_without_token == 0  # one token, reused


def test_an_unreachable_imds_is_logged_and_polled_again(tmp_path):
    lines = []
    a = agent.Agent(str(tmp_path), agent.Imds("http://127.0.0.1:9"), "boot-now", lines.append)
    a.poll_once()
    assert lines and lines[0].startswith("IMDS: ")


def test_the_endpoint_follows_botocore_convention(monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1234/")
    assert agent.Imds().endpoint == "http://127.0.0.1:1234"
    monkeypatch.delenv("AWS_EC2_METADATA_SERVICE_ENDPOINT")
    assert agent.Imds().endpoint == agent.IMDS_DEFAULT


def test_stopping_asks_going_runs_to_save(tmp_path):
    runs = tmp_path / "runs"
    going = run_folder(runs, "going", boot="boot-now")
    agent.Agent(str(runs), agent.Imds("http://127.0.0.1:9"), "boot-now", lambda s: None).stopping(wait_s=0)
    assert (going / agent.SAVE_REQUEST).exists()
    assert agent.RunFolder(str(going)).events()[0]["event"] == "stopping"


def test_the_resume_marker_lasts_until_each_resumed_run_wrote_its_pid(tmp_path):
    runs = tmp_path / "runs"
    slow = run_folder(runs, "slow", boot="boot-before")
    gate = tmp_path / "go"
    (slow / "run.sh").write_text(
        f'#!/usr/bin/env bash\ncd "$(dirname "$0")"\nwhile [ ! -e {gate} ]; do sleep 0.05; done\n'
        + RUN_SH.format(boot="boot-now").split("\n", 2)[2]
    )
    (runs / agent.RESUMING).touch()  # left by a boot that ended mid-resume
    done = threading.Event()
    threading.Thread(
        target=lambda: (
            agent.Agent(str(runs), agent.Imds("http://127.0.0.1:9"), "boot-now", lambda s: None).at_boot(),
            done.set(),
        ),
        daemon=True,
    ).start()
    wait_for("the old pid to be cleared", lambda: not (slow / "pid").exists())
    assert (runs / agent.RESUMING).exists() and not done.is_set()  # the guard still sees a resume under way
    gate.touch()
    wait_for("the agent to finish resuming", done.is_set, timeout=30)
    assert (slow / "pid").exists() and not (runs / agent.RESUMING).exists()


def test_a_stale_resume_marker_is_removed_when_there_is_nothing_to_resume(tmp_path):
    runs = tmp_path / "runs"
    run_folder(runs, "done", boot="boot-before", finished=True)
    (runs / agent.RESUMING).touch()
    agent.Agent(str(runs), agent.Imds("http://127.0.0.1:9"), "boot-now", lambda s: None).at_boot()
    assert not (runs / agent.RESUMING).exists()


def test_the_agent_process_leaves_no_zombie_of_a_resumed_run(tmp_path):
    """A finished resumed run must not look alive to `kill -0` (the guard, status, a follower's tail --pid).
    Run as the unit runs it: `python3 -m box.agent` from the folder holding the package box/."""
    import subprocess
    import sys

    runs = tmp_path / "runs"
    run = run_folder(runs, "cut", boot="an-earlier-boot", current="$(cat /proc/sys/kernel/random/boot_id)")
    env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"}
    repo = Path(agent.__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "box.agent", "--runs", str(runs), "--interval", "0.2"],
        env=env,
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("the resumed run to finish", lambda: (run / "exit_code").exists(), timeout=30)
        pid = int((run / "pid").read_text())
        wait_for("the finished run to be reaped (not a zombie)", lambda: not Path(f"/proc/{pid}").exists(), timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_stopping_waits_until_each_going_run_has_saved(tmp_path):
    """systemd kills what is left once the agent has stopped: it holds the shutdown until the runs saved."""
    import subprocess

    runs = tmp_path / "runs"
    job = subprocess.Popen(["sleep", "60"])
    mute = subprocess.Popen(["sleep", "60"])
    try:
        answers = run_folder(runs, "answers", boot="boot-now")
        silent = run_folder(runs, "silent", boot="boot-now")
        (answers / "pid").write_text(str(job.pid))
        (silent / "pid").write_text(str(mute.pid))
        answered = threading.Event()

        def model():  # plays model/save_request.py: saves at its next batch end, removes the request
            wait_for("the request", lambda: (answers / agent.SAVE_REQUEST).exists())
            (answers / agent.SAVE_REQUEST).unlink()
            answered.set()

        threading.Thread(target=model, daemon=True).start()
        lines = []
        a = agent.Agent(str(runs), agent.Imds("http://127.0.0.1:9"), "boot-now", lines.append)
        a.stopping(wait_s=2)
        assert answered.is_set() and not (answers / agent.SAVE_REQUEST).exists()
        assert lines[-1] == "no save from silent within 2s"  # waited for it to the end, then let go
        for p in (job, mute):
            p.kill()
            p.wait()
        lines.clear()
        a.stopping(wait_s=30)  # their jobs are gone: nothing to wait for, nothing late
        assert lines == ["the box is stopping: asked 2 run(s) to save now"]
    finally:
        for p in (job, mute):
            p.kill()
            p.wait()


def test_what_the_agent_starts_waits_for_its_own_children(tmp_path):
    """The agent ignores SIGCHLD (the kernel reaps the runs it resumes); what it starts (a run,
    the bootstrap) must not inherit that, or every wait in it fails with ECHILD: uv's did ("No
    child processes (os error 10)"), and the replacement's environment was never built."""
    import signal
    import sys

    from box import runfolder

    out = tmp_path / "child"
    probe = (
        "import signal, subprocess, sys; "
        f"r = subprocess.run(['{sys.executable}', '-c', 'raise SystemExit(3)']); "
        f"open({str(out)!r}, 'w').write(f'{{signal.getsignal(signal.SIGCHLD).name}} {{r.returncode}}')"
    )
    before = signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # as the agent's main() does
    try:
        runfolder.detach([sys.executable, "-c", probe], str(tmp_path))
    finally:
        signal.signal(signal.SIGCHLD, before)
    assert wait_for("the child's answer", lambda: out.exists() and out.read_text(), timeout=30) == "SIG_DFL 3"
