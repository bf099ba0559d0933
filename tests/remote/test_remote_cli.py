"""The real `remote` CLI in subprocesses against the session's sshd on 127.0.0.1.

Training runs are tiny (40 images of 32 px, 1-8 epochs): seconds each. The
box's workdir is a temp dir on this machine, so the tests watch the job's
files directly; "mid-run" is always a line seen in the log, never a sleep.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from remote_helpers import one_line_error, wait_for, whose_line

from common.errors import RemoteError, UsageError
from remote import sync

REPO = Path(__file__).resolve().parents[2]


def popen_remote(*argv, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "remote", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def box_runs(box) -> list[Path]:
    d = Path(box.workdir) / "runs"
    return sorted(d.iterdir()) if d.exists() else []


def log_has(run_dir: Path, text: str) -> bool:
    log = run_dir / "log"
    return log.exists() and text in log.read_text(errors="replace")


@pytest.mark.slow
def test_laptop_killed_mid_run_job_finishes_and_pull_brings_everything(cli, on_box, box, dataset, tmp_path):
    train = popen_remote(
        "train",
        *on_box,
        "--python",
        sys.executable,
        "--data",
        str(dataset),
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    try:
        run_dir = wait_for("the run dir on the box", lambda: box_runs(box) and box_runs(box)[0])
        wait_for("epoch 1 in the log", lambda: log_has(run_dir, "epoch 1/2") or train.poll() is not None)
        assert train.poll() is None, "the local train ended before it was killed: " + train.stderr.read()
        train.send_signal(signal.SIGKILL)
        train.wait(timeout=10)
    finally:
        if train.poll() is None:
            train.kill()
        train.stdout.close(), train.stderr.close()
    run_id = run_dir.name
    assert not (tmp_path / "runs" / run_id / "model.keras").exists(), "the laptop died before the end"

    wait_for("the job's exit code on the box", lambda: (run_dir / "exit_code").exists())
    assert (run_dir / "exit_code").read_text().strip() == "0"

    status = cli("remote", "status", run_id, *on_box, cwd=tmp_path)
    assert status.code == 0, status.err
    assert f"{run_id} succeeded" in status.out

    runs = cli("remote", "runs", cwd=tmp_path)
    row = next(l for l in runs.out.splitlines() if run_id in l).split()
    assert row[-2:] == ["finished", "no"], "as `status` last saw it; not home yet"

    pull = cli("remote", "pull", run_id, *on_box, cwd=tmp_path)
    assert pull.code == 0, pull.err
    local = tmp_path / "runs" / run_id
    history = json.loads((local / "history.json").read_text())
    assert len(history["loss"]) == 2
    for name in (
        "model.keras",
        "checkpoints/last.keras",
        "checkpoints/best.keras",
        "history.csv",
        "curves.png",
        "metrics.json",
        "run.json",
        "train.log",
        "exit_code",
        "run.sh",
    ):
        assert (local / name).is_file(), name
    assert any((local / "tensorboard").rglob("*tfevents*"))
    assert "epoch 2/2" in (local / "train.log").read_text()
    assert not list(local.rglob("*.part")), "no half-written files"

    runs = cli("remote", "runs", "--json", "--price", "3.6", cwd=tmp_path)
    (row,) = [r for r in json.loads(runs.out) if r["run"] == run_id]
    best = max(history["val_accuracy"])
    assert (row["net"], row["backend"], row["epochs_done"], row["epochs_asked"]) == ("cnn", "tensorflow", 2, 2)
    assert (row["best_val_accuracy"], row["best_epoch"]) == (best, history["val_accuracy"].index(best) + 1)
    assert (row["state"], row["exit_code"], row["home"], row["resumed"]) == ("finished", 0, True, 0)
    job_s = (local / "exit_code").stat().st_mtime - (local / "run.sh").stat().st_mtime
    assert row["duration_s"] == round(job_s, 1) > 0
    assert row["cost"] == pytest.approx(row["duration_s"] / 1000, abs=1e-4)  # 3.6 $/h = $0.001/s
    page = (local / "report.html").read_text()
    assert f"report: {local / 'report.html'}" in pull.err and "<th>duration</th>" in page, (
        "the page, again with the duration"
    )
    assert "<th>cost</th>" not in page, "--host: no price known"

    logs = cli("remote", "logs", run_id, *on_box, cwd=tmp_path)
    assert logs.code == 0 and "epoch 2/2" in logs.out and "saved" in logs.out


def _sshd_children(ssh_host) -> list[int]:
    """The per-connection processes of the test sshd (one per open SSH connection)."""
    from sandbox import sshd

    main = sshd.running(ssh_host.dir / "server").pid
    return [int(p) for p in Path(f"/proc/{main}/task/{main}/children").read_text().split()]


@pytest.mark.slow
def test_a_dropped_connection_mid_run_reconnects_and_still_brings_everything(
    cli, on_box, box, ssh_host, dataset, tmp_path
):
    train = popen_remote(
        "train",
        *on_box,
        "--python",
        sys.executable,
        "--data",
        str(dataset),
        "--epochs",
        "3",
        "--image-size",
        "32",
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    try:
        run_dir = wait_for("the run dir on the box", lambda: box_runs(box) and box_runs(box)[0])
        wait_for("epoch 1 in the log", lambda: log_has(run_dir, "epoch 1/3") or train.poll() is not None)
        assert train.poll() is None, train.stderr.read()
        # Kill the sshd processes serving the laptop's connections: the TCP
        # links drop as they would when a laptop sleeps or Wi-Fi changes.
        dropped = _sshd_children(ssh_host)
        assert dropped, "the laptop holds an SSH connection while it follows the log"
        for pid in dropped:
            os.kill(pid, signal.SIGKILL)
        out, err = train.communicate(timeout=300)
    finally:
        if train.poll() is None:
            train.kill()
            train.communicate()
    assert train.returncode == 0, err
    assert "connection lost" in err and "reconnecting" in err
    assert "epoch 3/3" in out
    local = tmp_path / "runs" / run_dir.name
    assert len(json.loads((local / "history.json").read_text())["loss"]) == 3
    assert (local / "model.keras").is_file()


def test_failing_job_exits_with_the_models_own_code_and_its_log_tail(cli, on_box, box, tmp_path):
    bad = tmp_path / "no-images"  # the right shape (the laptop checks only that), no readable image
    for split in ("train", "validation"):
        for cls in ("cats", "dogs"):
            (bad / split / cls).mkdir(parents=True)
            (bad / split / cls / "a.jpg").write_bytes(b"not really a jpeg")
    r = cli(
        "remote",
        "train",
        *on_box,
        "--python",
        sys.executable,
        "--data",
        str(bad),
        "--epochs",
        "1",
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert r.code == 2, r.err  # the model's own exit code (its bad input), passed through
    assert whose_line(r) == "remote: your command exited 2 (its own code, passed through)"
    assert (r.out + r.err).count("holds no readable image") == 1, "the model's own error, from the followed log, once"
    assert "training failed on the box (exit 2)" in one_line_error(r)
    (run,) = (tmp_path / "runs").iterdir()
    assert "holds no readable image" in (run / "train.log").read_text()
    assert (run / "exit_code").read_text().strip() == "2"


def test_bad_model_args_fail_on_the_box_with_the_models_argparse_code(cli, on_box, dataset, tmp_path):
    r = cli(
        "remote",
        "train",
        *on_box,
        "--python",
        sys.executable,
        "--data",
        str(dataset),
        "--epochs",
        "1",
        "--no-such-model-flag",
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert r.code == 2, r.err  # `python -m model`'s argparse exit, passed through (trainbox's own is UsageError's)
    assert r.code != UsageError.exit_code and whose_line(r).startswith("remote: your command exited 2")
    assert "--no-such-model-flag" in r.out + r.err  # the model's argparse complaint, from the followed log


@pytest.mark.slow
def test_stopped_mid_run_then_resume_finishes_at_the_requested_epoch(cli, on_box, box, dataset, tmp_path):
    start = cli(
        "remote",
        "train",
        *on_box,
        "--python",
        sys.executable,
        "--data",
        str(dataset),
        "--epochs",
        "8",
        "--image-size",
        "32",
        "--detach",
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert start.code == 0, start.err
    (run_dir,) = box_runs(box)
    run_id = run_dir.name
    assert f"follow its log: `remote logs {run_id} --follow" in start.err
    # Epoch 2's line means epoch 1's BackupAndRestore state is on disk (it is
    # saved right after its line), so the resume has something to resume from.
    wait_for("epoch 2 in the log", lambda: log_has(run_dir, "epoch 2/8") or (run_dir / "exit_code").exists())

    stop = cli("remote", "stop", run_id, *on_box, cwd=tmp_path)
    assert stop.code == 0, stop.err
    assert stop.out.strip() == f"{run_id} stopped", "stop returns once the job is gone"
    assert f"train --resume {run_id}" in stop.err
    assert not os.path.exists(f"/proc/{int((run_dir / 'pid').read_text())}")
    assert not (run_dir / "exit_code").exists(), "stopped mid-run: the job never finished"
    done = len((run_dir / "out" / "history.csv").read_text().strip().splitlines()) - 1
    assert 2 <= done < 8, f"stopped after {done} epochs"
    status = cli("remote", "status", run_id, *on_box, cwd=tmp_path)
    assert f"{run_id} stopped" in status.out, "stopped by `remote stop`, not died"
    (row,) = json.loads(cli("remote", "runs", "--json", cwd=tmp_path).out)
    assert (row["state"], row["home"], row["resumed"]) == ("stopped", False, 0)

    busy = cli("remote", "train", "--resume", "no-such-run", *on_box, cwd=tmp_path)
    assert busy.code == UsageError.exit_code and "no run no-such-run" in one_line_error(busy)

    resume = cli("remote", "train", "--resume", run_id, *on_box, cwd=tmp_path)
    assert resume.code == 0, resume.err + resume.out
    assert "resuming from" in resume.out, "the log streamed from where it stopped"
    assert "epoch 8/8" in resume.out
    local = tmp_path / "runs" / run_id
    history = json.loads((local / "history.json").read_text())
    assert len(history["loss"]) == 8
    assert "8 epochs" in resume.out
    (row,) = json.loads(cli("remote", "runs", "--json", cwd=tmp_path).out)
    assert (row["state"], row["home"], row["resumed"], row["epochs_done"], row["epochs_asked"]) == (
        "finished",
        True,
        1,
        8,
        8,
    )
    assert (local / "exit_code").read_text().strip() == "0"


@pytest.mark.slow
def test_resume_on_a_new_box_from_the_local_copy(cli, on_box, box, dataset, tmp_path):
    """The box a run started on is gone; its pulled copy holds the resume
    state, so --resume rebuilds the run on another box (here: another
    workdir on the same sshd) and finishes it at the requested epoch."""
    runs = ["--runs-dir", str(tmp_path / "runs")]
    start = cli(
        "remote",
        "train",
        *on_box,
        "--python",
        sys.executable,
        "--data",
        str(dataset),
        "--epochs",
        "6",
        "--image-size",
        "32",
        "--detach",
        *runs,
        cwd=tmp_path,
    )
    assert start.code == 0, start.err
    (run_dir,) = box_runs(box)
    run_id = run_dir.name
    wait_for("epoch 2 in the log", lambda: log_has(run_dir, "epoch 2/6") or (run_dir / "exit_code").exists())
    assert cli("remote", "stop", run_id, *on_box, cwd=tmp_path).code == 0
    wait_for("the job to end", lambda: not os.path.exists(f"/proc/{int((run_dir / 'pid').read_text())}"), timeout=30)
    done = len((run_dir / "out" / "history.csv").read_text().strip().splitlines()) - 1
    assert 2 <= done < 6, f"stopped after {done} epochs"
    assert cli("remote", "pull", run_id, *on_box, cwd=tmp_path).code == 0
    local = tmp_path / "runs" / run_id
    assert (local / "backup").is_dir(), "the pull brought the resume state home"

    new_workdir = tmp_path / "new-box"  # nothing of the run there, not even its data
    new_box = [*on_box[:-1], str(new_workdir)]
    resume = cli("remote", "train", "--resume", run_id, *new_box, "--python", sys.executable, cwd=tmp_path)
    assert resume.code == 0, resume.err + resume.out
    assert "from its local copy" in resume.err
    at = re.search(r"resuming from .* at epoch (\d+)/6", resume.out)
    assert at and int(at.group(1)) >= 2, resume.out
    assert "epoch 6/6" in resume.out and "epoch 1/6" not in resume.out, "only the remaining epochs ran"
    history = json.loads((local / "history.json").read_text())
    assert len(history["loss"]) == 6
    assert (local / "exit_code").read_text().strip() == "0"
    assert (new_workdir / "runs" / run_id / "exit_code").exists(), "it ran on the new box"
    assert not (new_workdir / "runs" / run_id / "out" / sync.MARKER).exists()
    # The record follows the run to its new box: status asks there.
    status = cli("remote", "status", run_id, "--host", on_box[1], "--identity", on_box[3], cwd=tmp_path)
    assert f"{run_id} succeeded" in status.out, status.out + status.err


def test_resume_without_a_resume_state_anywhere_says_what_to_do(cli, on_box, box, tmp_path):
    from remote import records
    from remote.target import Target

    rec = records.new_record(
        "20260101-000000-abcd",
        Target("127.0.0.1", 22, "u", None, "/nowhere"),
        tmp_path / "runs" / "20260101-000000-abcd",
    )
    rec.data, rec.train_args = None, ["--epochs", "3"]
    records.save_record(rec)
    r = cli("remote", "train", "--resume", rec.run_id, *on_box, "--python", sys.executable, cwd=tmp_path)
    assert r.code == RemoteError.exit_code, r.err
    err = one_line_error(r)
    assert "no resume state" in err and f"remote pull {rec.run_id}" in err


def test_unreachable_port_exits_3_within_the_connect_timeout(cli, tmp_path, pinned):
    from common.procs import free_port

    started = time.monotonic()
    r = cli(
        "remote",
        "status",
        "--host",
        f"{pinned.user}@127.0.0.1:{free_port()}",
        "--identity",
        str(pinned.key),
        "--connect-timeout",
        "2",
        cwd=tmp_path,
    )
    took = time.monotonic() - started
    assert r.code == RemoteError.exit_code
    line = one_line_error(r)
    assert "cannot reach" in line and "check the host, the port" in line
    assert took < 2 + 8, f"took {took:.1f}s with --connect-timeout 2"  # 8 s: interpreter start on a slow CI box


def test_host_key_mismatch_exits_3_and_keeps_the_pin(cli, on_box, pinned, trainbox_home, tmp_path):
    from common import hostkeys
    from sandbox import sshd

    _, wrong = sshd.new_private_key()
    hostkeys.pin("127.0.0.1", pinned.port, [" ".join(wrong.split()[:2])])
    before = (trainbox_home / "known_hosts").read_text() if (trainbox_home / "known_hosts").exists() else None
    r = cli("remote", "status", *on_box, "--connect-timeout", "5", cwd=tmp_path)
    assert r.code == RemoteError.exit_code
    assert "host key mismatch" in one_line_error(r)
    from common import paths

    assert wrong.split()[1] in paths.known_hosts().read_text(), "the pinned key was not replaced"
    assert before is None or before == (trainbox_home / "known_hosts").read_text()


def test_auth_refused_exits_3(cli, pinned, box, tmp_path):
    from common import paths
    from sandbox import sshd

    other = tmp_path / "other_key"
    paths.write_private(other, sshd.new_private_key()[0])
    r = cli("remote", "status", "--host", pinned.spec, "--identity", str(other), "--connect-timeout", "5", cwd=tmp_path)
    assert r.code == RemoteError.exit_code
    assert "refused the key" in one_line_error(r)


def test_status_of_a_reachable_box_without_runs(cli, on_box, tmp_path):
    r = cli("remote", "status", *on_box, cwd=tmp_path)
    assert r.code == 0, r.err
    assert "reachable; no runs" in r.out


def test_push_shows_a_progress_bar_on_a_terminal_and_none_in_a_log(cli, on_box, dataset, tmp_path):
    """A terminal gets tqdm's bar (bytes, rate) for each push; captured output
    (a CI log, a pipe) gets only the one-line summaries."""
    import fcntl
    import pty
    import struct
    import termios
    import threading

    from tqdm import tqdm

    # The job itself fails at once (an unknown model flag): only the pushes matter here.
    argv = [
        "train",
        *on_box,
        "--python",
        sys.executable,
        "--data",
        str(dataset),
        "--epochs",
        "1",
        "--detach",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--no-such-model-flag",
    ]
    master, slave = pty.openpty()
    # A terminal's size, as a real one has (a bare pty is 0x0: tqdm draws nothing in 0 columns).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "remote", *argv], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=slave, text=True
    )
    os.close(slave)
    seen = bytearray()

    def drain():
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        assert proc.wait(timeout=120) == 0
    finally:
        proc.stdout.close()
        reader.join(timeout=30)
        os.close(master)
    terminal = seen.decode(errors="replace")
    assert "push data" in terminal and "push code" in terminal, terminal
    total = sum(p.stat().st_size for p in dataset.rglob("*") if p.is_file())
    assert f"/{tqdm.format_sizeof(total, divisor=1024)}" in terminal, "the bar counts the data's bytes"
    assert "B/s" in terminal, "and shows the rate"
    assert "data: sent" in terminal

    piped = cli("remote", *argv, cwd=tmp_path)
    assert piped.code == 0, piped.err
    assert "push data" not in piped.err and "\r" not in piped.err
    assert "data: up to date on the box" in piped.err


def test_pull_refuses_a_symlink_out_of_the_run_dir(cli, on_box, box, tmp_path):
    from remote import records
    from remote.target import Target

    run_id = "20260101-000000-abcd"
    run_dir = Path(box.workdir) / "runs" / run_id
    (run_dir / "out").mkdir(parents=True)
    (run_dir / "out" / "model.keras").write_bytes(b"weights")
    (run_dir / "out" / "etc").symlink_to("/etc")
    (run_dir / "log").write_text("done\n")
    (run_dir / "pid").write_text("999999\n")
    (run_dir / "exit_code").write_text("0\n")
    local = tmp_path / "runs" / run_id
    records.new_record(run_id, Target("127.0.0.1", box.port, box.user, box.identity, box.workdir), local)

    r = cli("remote", "pull", run_id, *on_box, cwd=tmp_path)
    assert r.code == RemoteError.exit_code
    assert "refused 1 unsafe entries" in one_line_error(r) and "out/etc" in r.err
    assert not (local / "etc").exists() and not (local / "etc").is_symlink()
    assert [
        p.name for p in tmp_path.iterdir() if p.name not in ("runs", "box", "trainbox-home", "trainbox-cache")
    ] == []


@pytest.mark.slow
def test_a_stopped_sandbox_box_names_provision_start(cli, moto_endpoint, tmp_path):
    up = cli("provision", "up", "--sandbox", cwd=tmp_path)
    assert up.code == 0, up.err
    try:
        ok = cli("remote", "status", cwd=tmp_path)
        assert ok.code == 0 and "reachable" in ok.out, ok.err
        stop = cli("provision", "stop", cwd=tmp_path)
        assert stop.code == 0, stop.err
        r = cli("remote", "status", "--connect-timeout", "2", cwd=tmp_path)
        assert r.code == RemoteError.exit_code
        line = one_line_error(r)
        assert "may be stopped" in line and "python -m provision start" in line
        assert "--start" in line

        woken = cli("remote", "status", "--start", cwd=tmp_path)
        assert woken.code == 0, woken.err
        assert "box 'default' is stopped: starting it" in woken.err
        assert "reachable" in woken.out
        assert "running" in cli("provision", "state", cwd=tmp_path).out
        again = cli("remote", "status", "--start", cwd=tmp_path)
        assert again.code == 0 and "starting it" not in again.err, "a running box is left alone"
    finally:
        down = cli("provision", "down", "--yes", "--no-pull", cwd=tmp_path)
        if down.code != 0:
            cli("provision", "down", "--yes", cwd=tmp_path)
