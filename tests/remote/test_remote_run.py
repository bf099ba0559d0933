"""`remote run`: your project and your command, on the machinery of `remote train`.

Each test makes its own small project (plain Python scripts: no TensorFlow
import here, the box tests train a real Keras script) and runs the real CLI
against the session's sshd on 127.0.0.1, with --python this interpreter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from remote_helpers import one_line_error, wait_for, whose_line

from common.errors import EX_SOFTWARE, RemoteError, UsageError

REPO = Path(__file__).resolve().parents[2]

# Prints its argv and its environment as JSON, writes into $TRAINBOX_OUT; waits
# for a file named by its first argument when given "wait".
ECHO = """import json, os, sys, time
out = os.environ["TRAINBOX_OUT"]
os.makedirs(out + "/checkpoints", exist_ok=True)
seen = {"argv": sys.argv[1:], "cwd": os.getcwd(), "python": sys.executable,
        **{k: v for k, v in os.environ.items() if k.startswith("TRAINBOX_")}}
print("seen " + json.dumps(seen), flush=True)
open(out + "/seen-%s.json" % os.environ["TRAINBOX_RESUMED"], "w").write(json.dumps(seen))
open(out + "/checkpoints/last.txt", "w").write("epoch 1")
if sys.argv[1:2] == ["wait"]:
    print("waiting for " + sys.argv[2], flush=True)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.05)
code = int(os.environ.get("EXIT_WITH", "0"))
if code:
    print("giving up: the loss is NaN", file=sys.stderr)
sys.exit(code)
"""


def project(tmp_path: Path) -> Path:
    p = tmp_path / "my project"
    (p / "lib").mkdir(parents=True)
    (p / "echo.py").write_text(ECHO)
    (p / "lib" / "util.py").write_text("X = 1\n")
    (p / ".gitignore").write_text("secrets.env\n*.ckpt\n")
    (p / "secrets.env").write_text("TOKEN=do-not-send")
    (p / "old.ckpt").write_text("big")
    return p


def run_flags(on_box, tmp_path) -> list[str]:
    return [*on_box, "--python", sys.executable, "--runs-dir", str(tmp_path / "runs"), "--pull-every", "600"]


def seen(local: Path, n: int = 0) -> dict:
    return json.loads((local / f"seen-{n}.json").read_text())


def test_run_pushes_the_project_runs_the_argv_exactly_and_brings_the_outputs_home(cli, on_box, box, dataset, tmp_path):
    code = project(tmp_path)
    argv = ["two words", 'it\'s "quoted"', "$(touch pwned)", "`touch pwned`", "*", "$HOME", ""]
    r = cli(
        "remote",
        "run",
        "--code",
        str(code),
        "--data",
        str(dataset),
        *run_flags(on_box, tmp_path),
        "--",
        "python",
        "echo.py",
        *argv,
        cwd=tmp_path,
    )
    assert r.code == 0, r.err + r.out
    (local,) = (tmp_path / "runs").iterdir()
    got = seen(local)
    assert got["argv"] == argv, "every argument reached the script unchanged"
    assert got["TRAINBOX_RUN_ID"] == local.name and got["TRAINBOX_RESUMED"] == "0"
    run_dir = Path(box.workdir) / "runs" / local.name
    assert got["TRAINBOX_OUT"] == str(run_dir / "out")
    data = Path(got["TRAINBOX_DATA"])
    assert sorted(p.relative_to(data) for p in data.rglob("*.png")) == sorted(
        p.relative_to(dataset) for p in dataset.rglob("*.png")
    )
    pushed = Path(got["cwd"])
    assert sorted(
        p.relative_to(pushed).as_posix() for p in pushed.rglob("*") if p.is_file() and p.name != ".trainbox-complete"
    ) == [".gitignore", "echo.py", "lib/util.py"], "the ignored files stayed home"
    assert got["python"] == sys.executable
    assert not list(Path(box.workdir).rglob("pwned")) and not list(tmp_path.rglob("pwned"))
    assert (local / "checkpoints" / "last.txt").read_text() == "epoch 1"
    assert "seen " in (local / "train.log").read_text() and (local / "exit_code").read_text().strip() == "0"
    runs = cli("remote", "runs", cwd=tmp_path)
    row = next(l for l in runs.out.splitlines() if local.name in l).split()
    assert row[2] == "-/tensorflow" and row[-2:] == ["finished", "yes"], "your own code: no net, home"


def test_a_failing_script_gives_its_exit_code_and_the_logs_last_lines(cli, on_box, tmp_path):
    code = project(tmp_path)
    r = cli(
        "remote",
        "run",
        "--code",
        str(code),
        *run_flags(on_box, tmp_path),
        "--",
        "env",
        "EXIT_WITH=5",
        "python",
        "echo.py",
        cwd=tmp_path,
    )
    assert r.code == 5, r.err
    assert (r.out + r.err).count("giving up: the loss is NaN") == 1, "the followed log's last line, once"
    assert "the command failed on the box (exit 5)" in one_line_error(r)
    (local,) = (tmp_path / "runs").iterdir()
    assert "giving up" in (local / "train.log").read_text()
    assert "TRAINBOX_DATA" not in seen(local), "no --data: no TRAINBOX_DATA"


def test_laptop_killed_mid_run_then_pull_then_resume(cli, on_box, box, tmp_path):
    code = project(tmp_path)
    release = tmp_path / "release"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    laptop = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "remote",
            "run",
            "--code",
            str(code),
            *run_flags(on_box, tmp_path),
            "--",
            "python",
            "echo.py",
            "wait",
            str(release),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = Path(box.workdir) / "runs"
    try:
        log = wait_for(
            "the script waiting on the box",
            lambda: (
                next((f for f in runs.glob("*/log") if "waiting for" in f.read_text()), None) if runs.exists() else None
            ),
        )
        assert laptop.poll() is None, laptop.stderr.read()
        laptop.send_signal(signal.SIGKILL)
        laptop.wait(timeout=10)
    finally:
        if laptop.poll() is None:
            laptop.kill()
        laptop.stdout.close(), laptop.stderr.close()
    run_dir = log.parent
    stop = cli(
        "remote", "stop", run_dir.name, *on_box, cwd=tmp_path
    )  # a run that succeeded is not resumed: this one stops
    assert stop.code == 0 and "stopped" in stop.out, stop.err
    pull = cli("remote", "pull", run_dir.name, *on_box, cwd=tmp_path)
    assert pull.code == 0, pull.err
    local = tmp_path / "runs" / run_dir.name
    assert seen(local)["argv"] == ["wait", str(release)] and not (local / "exit_code").exists()

    release.write_text("go")
    again = cli("remote", "run", "--resume", run_dir.name, *on_box, "--pull-every", "600", cwd=tmp_path)
    assert again.code == 0, again.err
    assert "resumed" in again.err
    assert seen(local, 1)["TRAINBOX_RESUMED"] == "1", "the same command again, told it was restarted"
    assert seen(local, 1)["argv"] == ["wait", str(release)]
    assert (local / "seen-0.json").exists(), "the first start's outputs are still there"


def test_a_project_over_the_size_limit_is_refused_without_yes(cli, on_box, box, tmp_path):
    code = project(tmp_path)
    with open(code / "weights.bin", "wb") as f:  # sparse: its size, none of its disk
        f.truncate(201 * 1024 * 1024)
    r = cli("remote", "run", "--code", str(code), *run_flags(on_box, tmp_path), "--", "python", "echo.py", cwd=tmp_path)
    assert r.code == UsageError.exit_code, r.err
    line = one_line_error(r)
    assert "201.0 MB" in line and "--data" in line and "--yes" in line and ".trainboxignore" in line
    assert not (Path(box.workdir) / "projects").exists(), "nothing was pushed"


def test_run_without_a_command_is_a_usage_error(cli, tmp_path):
    r = cli("remote", "run", "--host", "127.0.0.1", cwd=tmp_path)
    assert r.code == UsageError.exit_code and "command after --" in one_line_error(r)


# ---------------------------------------------------------------- exit codes: whose is it


def test_a_command_exiting_2_passes_2_through_and_the_last_line_says_it_is_the_commands(cli, on_box, tmp_path):
    code = project(tmp_path)
    r = cli(
        "remote",
        "run",
        "--code",
        str(code),
        *run_flags(on_box, tmp_path),
        "--",
        "env",
        "EXIT_WITH=2",
        "python",
        "echo.py",
        cwd=tmp_path,
    )
    assert r.code == 2, r.err
    assert 2 not in (UsageError.exit_code, RemoteError.exit_code, EX_SOFTWARE), "trainbox's own codes are not 2"
    assert whose_line(r) == "remote: your command exited 2 (its own code, passed through)"
    assert "the command failed on the box (exit 2)" in one_line_error(r)


def test_a_command_killed_by_a_signal_exits_128_plus_it(cli, on_box, tmp_path):
    code = project(tmp_path)
    (code / "die.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGUSR1)\n")
    r = cli("remote", "run", "--code", str(code), *run_flags(on_box, tmp_path), "--", "python", "die.py", cwd=tmp_path)
    assert r.code == 128 + signal.SIGUSR1, r.err
    assert whose_line(r) == f"remote: your command exited {128 + signal.SIGUSR1} (its own code, passed through)"


def test_trainbox_failing_before_the_command_starts_says_the_code_is_its_own(cli, on_box, tmp_path):
    code = project(tmp_path)
    r = cli(
        "remote",
        "run",
        "--code",
        str(code),
        *on_box,
        "--python",
        str(tmp_path / "no-such-python"),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--",
        "python",
        "echo.py",
        cwd=tmp_path,
    )
    assert r.code == RemoteError.exit_code, r.err
    assert "no Python with TensorFlow" in one_line_error(r)
    assert (
        whose_line(r)
        == f"remote: trainbox: exit {RemoteError.exit_code} (a cloud or SSH error); your command did not start"
    )


def test_usage_errors_argparses_too_exit_64(cli, tmp_path):
    assert UsageError.exit_code == 64 and RemoteError.exit_code == 69 and EX_SOFTWARE == 70
    r = cli("remote", "run", "--no-such-flag", "--", "true", cwd=tmp_path)
    assert r.code == UsageError.exit_code, r.err
    r = cli("remote", "runs", "--price", "nan", cwd=tmp_path)
    assert r.code == UsageError.exit_code, r.err


# ---------------------------------------------------------------- --resume of a run that succeeded


def _box_run(box, run_id: str) -> Path:
    return Path(box.workdir) / "runs" / run_id


def test_resume_of_a_run_that_succeeded_is_refused_before_anything_starts(cli, on_box, box, tmp_path):
    code = project(tmp_path)
    first = cli(
        "remote",
        "run",
        "--code",
        str(code),
        *run_flags(on_box, tmp_path),
        "--",
        "python",
        "echo.py",
        "a b",
        cwd=tmp_path,
    )
    assert first.code == 0, first.err
    (local,) = (tmp_path / "runs").iterdir()
    run_dir = _box_run(box, local.name)
    log_before = (run_dir / "log").read_bytes()
    (code / "echo.py").write_text(ECHO + "# changed: a push would send it\n")

    r = cli("remote", "run", "--resume", local.name, *on_box, "--pull-every", "600", cwd=tmp_path)
    assert r.code == UsageError.exit_code, r.err
    line = one_line_error(r)
    assert f"run {local.name} succeeded: there is nothing to resume" in line
    assert "start a new run with `remote run -- python echo.py 'a b'`" in line
    assert len([l for l in r.err.splitlines() if l.strip()]) == 1, "one line, nothing reached or pushed first: " + r.err
    assert not (run_dir / "out" / "seen-1.json").exists() and (run_dir / "log").read_bytes() == log_before
    assert (run_dir / "resumed").read_text().strip() == "0" and (run_dir / "exit_code").read_text().strip() == "0"
    pushed = next((Path(box.workdir) / "projects").iterdir()) / "echo.py"
    assert "changed" not in pushed.read_text(), "nothing was pushed"


def test_resume_of_a_run_that_succeeded_is_refused_when_only_the_box_knows(cli, on_box, box, tmp_path, trainbox_home):
    """The laptop never saw the end (no exit code recorded or pulled): the box's exit_code decides, before the restart."""
    from remote import records

    code = project(tmp_path)
    r = cli(
        "remote",
        "run",
        "--code",
        str(code),
        *run_flags(on_box, tmp_path),
        "--detach",
        "--",
        "python",
        "echo.py",
        cwd=tmp_path,
    )
    assert r.code == 0, r.err
    (rec,) = records.records()
    run_dir = _box_run(box, rec.run_id)
    wait_for("the run to succeed on the box", lambda: (run_dir / "exit_code").exists())
    assert (run_dir / "exit_code").read_text().strip() == "0" and records.load_record(rec.run_id).exit_code is None
    assert not (Path(rec.local_dir) / "exit_code").exists()

    again = cli("remote", "run", "--resume", rec.run_id, *on_box, cwd=tmp_path)
    assert again.code == UsageError.exit_code, again.err
    assert "succeeded: there is nothing to resume" in one_line_error(again)
    assert (run_dir / "resumed").read_text().strip() == "0" and not (run_dir / "out" / "seen-1.json").exists()


def test_resume_of_a_run_that_failed_runs_it_again(cli, on_box, box, tmp_path):
    code = project(tmp_path)
    first = cli(
        "remote",
        "run",
        "--code",
        str(code),
        *run_flags(on_box, tmp_path),
        "--",
        "env",
        "EXIT_WITH=5",
        "python",
        "echo.py",
        cwd=tmp_path,
    )
    assert first.code == 5, first.err
    (local,) = (tmp_path / "runs").iterdir()
    again = cli("remote", "run", "--resume", local.name, *on_box, "--pull-every", "600", cwd=tmp_path)
    assert again.code == 5 and "resumed" in again.err, again.err
    assert seen(local, 1)["TRAINBOX_RESUMED"] == "1", "the failed run was started again"
