"""A link cut inside the job's start command (docs/reliability.md): the
moment is deterministic, held by the test's sshd (its ForceCommand hook, not
trainbox's code): the start command runs on the box as it always does, and
the hook holds its exit status, either once the job wrote its pid (the box
started it, the laptop never heard) or before the command runs at all (the
box never started it). Then the session is killed (linkkit.cut). What must
hold: one line; the run stays in `remote runs` ("start unconfirmed" until the
box is asked); the same command again never starts a second run unsaid."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from linkkit import cut, start_cli_box, start_hooked_sshd, stop_sshd

from testkit import Result, one_line_error, run_cli, wait_for

START_NEEDLE = "did not write its pid"  # a phrase of remote/job.py's start command, and of no other

HOOK = r"""# The test's hold on the job's start command (sshd's ForceCommand); every other command runs as sshd runs it.
cmd=$SSH_ORIGINAL_COMMAND
here=$(dirname "$0")
case "$cmd" in
  *"NEEDLE"*)
    if [ "$(cat "$here/mode")" = before ]; then
      : > "$here/held"  # the command never runs: the box never starts the job
      while kill -0 "$PPID" 2>/dev/null; do sleep 0.05; done
      exit 1
    fi
    /bin/bash -c "$cmd"; code=$?
    if [ "$code" = 0 ]; then
      : > "$here/held"  # the job started; its exit status waits for the cut
      while kill -0 "$PPID" 2>/dev/null; do sleep 0.05; done
    fi
    exit "$code";;
esac
exec /bin/bash -c "$cmd"
""".replace("NEEDLE", START_NEEDLE)

WAITER = """import os, sys, time
print("waiting for " + sys.argv[1], flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
print("done", flush=True)
"""


@pytest.fixture
def hooked(tmp_path, trainbox_home):  # trainbox_home: this test's TRAINBOX_HOME (its run records)
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "hold.sh").write_text(HOOK)
    server = start_hooked_sshd(tmp_path / "sshd", hook_dir / "hold.sh")
    yield server, hook_dir
    stop_sshd(server)


def _flags(server, workdir: Path) -> list[str]:
    return ["--host", server.spec, "--identity", str(server.key), "--workdir", str(workdir)]


def _cut_start(server, hook_dir: Path, tmp_path: Path, mode: str) -> tuple[str, list[str], str]:
    """`remote run` whose start command is cut (``mode``: after the job started, or before); (its error line, its argv, its stderr)."""
    (hook_dir / "mode").write_text(mode)
    code = tmp_path / "proj"
    code.mkdir(exist_ok=True)
    (code / "wait.py").write_text(WAITER)
    rest = ["--code", str(code), "--python", sys.executable, "--runs-dir", str(tmp_path / "runs")]
    argv = [*rest, "--detach", "--", "python", "wait.py", str(tmp_path / "go")]
    out = tmp_path / f"start-{mode}.out"
    proc = start_cli_box(server, tmp_path / "box", ["run"], argv, out)
    try:
        held = hook_dir / "held"
        wait_for("the hook to hold the start command", lambda: held.exists() or proc.poll() is not None, 120)
        assert held.exists(), Path(f"{out}.err").read_text()
        cut(server, "hold.sh", box_side_done=True)  # the one session running the hook now: the held start
        assert proc.wait(timeout=60) == 69, Path(f"{out}.err").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = Path(f"{out}.err").read_text()
    lines = [line for line in err.splitlines() if not line.startswith("code: sent")]  # the push's own progress line
    return one_line_error(Result(69, "", "\n".join(lines))), argv, err


def _box_runs(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "box" / "runs").iterdir() if (p / "run.sh").exists())


def test_a_start_cut_after_the_job_started_keeps_the_run_and_the_same_command_does_not_start_it_twice(hooked, tmp_path):
    server, hook_dir = hooked
    line, argv, err = _cut_start(server, hook_dir, tmp_path, "after")
    (run_id,) = _box_runs(tmp_path)
    assert f"the link to the box dropped during the start of run {run_id}" in line, line
    assert "run the same `remote run` command again" in line and f"remote status {run_id}" in line, line
    assert "did not start" not in err, err
    wait_for("the job to run on the box", lambda: "waiting for" in (tmp_path / "box/runs" / run_id / "log").read_text())
    record = json.loads((tmp_path / "trainbox-home" / "runs" / f"{run_id}.json").read_text())
    assert record["last_seen"] == "start unconfirmed", record  # kept, not forgotten

    flags = _flags(server, tmp_path / "box")
    runs = run_cli("remote", "runs", timeout=60)
    assert runs.code == 0, runs.err
    (row,) = [r for r in runs.out.splitlines() if r.startswith(run_id)]
    assert "running" in row, runs.out  # `remote runs` asked the box (settled: no longer unconfirmed)

    again = run_cli("remote", "run", *flags, *argv, timeout=60)
    assert again.code == 64, again.err
    refusal = one_line_error(again)
    assert f"run {run_id}, started by this same command, is running on" in refusal, refusal
    assert f"remote logs {run_id} --follow" in refusal and "--yes" in refusal, refusal
    assert _box_runs(tmp_path) == [run_id], "no second run was started"

    (tmp_path / "go").write_text("")
    status = wait_for(
        "the run to end",
        lambda: (s := run_cli("remote", "status", run_id, *flags, timeout=60)).code == 0 and "succeeded" in s.out and s,
        60,
    )
    assert status.out.strip().startswith(f"{run_id} succeeded"), status.out


def test_a_start_cut_before_the_job_began_is_forgotten_when_the_same_command_starts_it(hooked, tmp_path):
    server, hook_dir = hooked
    line, argv, _ = _cut_start(server, hook_dir, tmp_path, "before")
    (run_id,) = _box_runs(tmp_path)  # run.sh is there; the start command never ran
    assert not (tmp_path / "box/runs" / run_id / "pid").exists()
    assert f"the link to the box dropped during the start of run {run_id}" in line, line

    (hook_dir / "hold.sh").write_text('exec /bin/bash -c "$SSH_ORIGINAL_COMMAND"\n')  # no more holds
    (tmp_path / "go").write_text("")
    again = run_cli("remote", "run", *_flags(server, tmp_path / "box"), *argv, timeout=60)
    assert again.code == 0, again.err
    assert f"run {run_id}, started earlier by this same command, never began on the box" in again.err, again.err
    first, second = sorted(_box_runs(tmp_path), key=lambda r: r != run_id)
    assert first == run_id and (tmp_path / "box/runs" / second / "pid").exists()
    assert not (tmp_path / "trainbox-home" / "runs" / f"{run_id}.json").exists(), (
        "the run that never began is forgotten"
    )


def test_runs_keeps_a_start_unconfirmed_while_its_box_does_not_answer(trainbox_home, tmp_path):
    """`remote runs` asks about such a run only; a box that does not answer leaves it unconfirmed, said once."""
    from common.procs import free_port
    from remote import records, unconfirmed
    from remote.target import Target

    rec = records.new_record("20260101-000000-abcd", Target("127.0.0.1", free_port(), "u", None, "/w"), tmp_path / "r")
    unconfirmed.mark(rec)
    runs = run_cli("remote", "runs", "--connect-timeout", "1", timeout=60)
    assert runs.code == 0, runs.err
    (row,) = [r for r in runs.out.splitlines() if r.startswith(rec.run_id)]
    assert "start unconfirmed" in row, runs.out
    assert runs.err.count(f"run {rec.run_id}: its start is unconfirmed, and its box did not answer") == 1, runs.err
    assert records.load_record(rec.run_id).last_seen == "start unconfirmed"
