"""Hostile and broken input on the remote side (issue 14), against the real
sshd on 127.0.0.1: symlinks and odd names in a pushed data set, pid files on
the box, corrupt run records, what the box prints, bad keys and arguments."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from common import checks, paths
from common.errors import RemoteError, UsageError
from remote import job, records, results, sync


def one_line(err: str) -> str:
    assert "Traceback" not in err and "unexpected" not in err, err
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- 3, 9: the push


def _dataset(tmp_path: Path) -> Path:
    root = tmp_path / "set"
    (root / "train" / "cats").mkdir(parents=True)
    (root / "train" / "cats" / "0.jpg").write_bytes(b"cat")
    return root


@pytest.mark.parametrize(
    "make",
    [
        lambda root, secret: (root / "train" / "cats" / "1.jpg").symlink_to(secret),  # a file outside
        lambda root, secret: (root / "train" / "up").symlink_to("../.."),  # a directory above the root
        lambda root, secret: (root / "train" / "cats" / "abs").symlink_to(secret.parent),  # a directory outside
    ],
)
def test_the_push_refuses_links_that_leave_the_data_set(conn, box, tmp_path, make):
    secret = tmp_path / "aws-credentials"
    secret.write_text("aws_secret_access_key = SECRET")
    root = _dataset(tmp_path)
    make(root, secret)
    with pytest.raises(UsageError) as e:
        sync.push(conn, root, f"{box.workdir}/data/set")
    text = str(e.value)
    assert "\n" not in text and "outside" in text and "train/" in text
    assert (
        not Path(box.workdir, "data", "set").exists()
        or "SECRET"
        not in subprocess.run(["grep", "-r", "SECRET", f"{box.workdir}/data"], capture_output=True, text=True).stdout
    )


def test_the_push_refuses_a_link_loop_in_one_line(tmp_path):
    root = _dataset(tmp_path)
    (root / "train" / "a").mkdir()
    (root / "train" / "a" / "back").symlink_to("..")
    (root / "train" / "self").symlink_to("self")  # a link to itself: ELOOP
    with pytest.raises(UsageError) as e:
        sync.scan_local(root)
    assert "loop" in str(e.value) and "train/a/back" in str(e.value)


def test_links_inside_the_data_set_are_followed(tmp_path):
    root = _dataset(tmp_path)
    (root / "train" / "dogs").symlink_to("cats")
    (root / "train" / "cats" / "same.jpg").symlink_to("0.jpg")
    assert sorted(sync.scan_local(root)) == [
        "train/cats/0.jpg",
        "train/cats/same.jpg",
        "train/dogs/0.jpg",
        "train/dogs/same.jpg",
    ]


def test_a_newline_in_a_file_name_pushes_and_pushes_again(conn, box, tmp_path):
    root = _dataset(tmp_path)
    (root / "train" / "cats" / "a\nb.jpg").write_bytes(b"odd")
    (root / "#pending").write_bytes(b"looks like a marker")
    remote = f"{box.workdir}/data/set"
    assert sync.push(conn, root, remote).send == sorted(["#pending", "train/cats/0.jpg", "train/cats/a\nb.jpg"])
    assert Path(remote, "train", "cats", "a\nb.jpg").read_bytes() == b"odd"
    again = sync.push(conn, root, remote)
    assert again.noop, again


def test_a_newline_in_a_checkpoint_name_pulls(conn, box, tmp_path):
    run = Path(box.workdir) / "runs" / "r1"
    (run / "out" / "checkpoints").mkdir(parents=True)
    (run / "out" / "checkpoints" / "a\nb.keras").write_bytes(b"x")
    got = results.pull(conn, str(run), tmp_path / "home", only="checkpoints")
    assert got == ["checkpoints/a\nb.keras"]


# ---------------------------------------------------------------- 1: pid files on the box


@pytest.mark.parametrize("pid_text", ["0", "-1", "", "x", "12 13"])
def test_remote_stop_never_signals_a_pid_file_that_names_no_job(conn, box, pid_text):
    run_dir = Path(box.workdir) / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "pid").write_text(pid_text + "\n")
    with pytest.raises(RemoteError) as e:
        job.stop(conn, str(run_dir))
    assert "pid" in str(e.value)
    assert not (run_dir / "stopped").exists()


def test_remote_stop_leaves_a_reused_pid_alone(conn, box):
    from common import procs

    other = subprocess.Popen(["sleep", "60"], start_new_session=True)  # someone else's program, now at the old pid
    try:
        run_dir = Path(box.workdir) / "runs" / "r1"
        run_dir.mkdir(parents=True)
        (run_dir / "pid").write_text(f"{other.pid}\n")
        (run_dir / procs.START_FILE).write_text("1\n")  # when the job that wrote it started
        job.stop(conn, str(run_dir))
        assert other.poll() is None, "another program's group was signalled"
        (run_dir / procs.START_FILE).write_text(procs.start_time(other.pid) + "\n")
        (run_dir / "exit_code").write_text("0\n")  # a finished run: nothing to stop
        job.stop(conn, str(run_dir))
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


# ---------------------------------------------------------------- 8: records, down


def _record(run_id="20250101-000000-abcd", box="default", **kw) -> records.RunRecord:
    base = dict(
        run_id=run_id,
        box=box,
        host="127.0.0.1",
        port=22,
        user="u",
        identity=None,
        workdir="w",
        local_dir="/nowhere",
        created=1.0,
    )
    base.update(kw)
    return records.RunRecord(**base)


def test_a_corrupt_run_record_is_skipped_with_a_warning_naming_it(caplog, capsys):
    from cli.remote_main import main

    records.save_record(_record())
    bad = paths.home() / "runs" / "20250101-000001-dead.json"
    bad.write_text("{truncated")
    (paths.home() / "runs" / "20250101-000002-beef.json").write_text('{"run_id": 5}')
    assert [r.run_id for r in records.records()] == ["20250101-000000-abcd"]
    assert str(bad) in caplog.text
    assert main(["runs"]) == 0
    assert "20250101-000000-abcd" in capsys.readouterr().out
    with pytest.raises(UsageError) as e:
        records.load_record("20250101-000001-dead")
    assert str(bad) in str(e.value)


@pytest.mark.parametrize("run", ["../../state/default", "a/b", "", ".hidden"])
def test_a_run_id_that_is_not_one_is_refused(capsys, run):
    from cli.remote_main import main

    with pytest.raises(SystemExit) as e:
        main(["pull", run])
    assert e.value.code == UsageError.exit_code
    err = capsys.readouterr().err
    assert "run id" in err and len(err.strip().splitlines()) == 1


def test_down_keeps_a_box_whose_run_it_cannot_pull_unless_no_pull(cli, moto_endpoint, tmp_path):
    """A symlink in an unpulled run's out/ (refused by the pull): down names the run, why,
    and how to go on, and deletes nothing, --yes or not (issue 26: results that cannot
    come home keep the box); --no-pull deletes it."""
    env = {"AWS_ENDPOINT_URL": moto_endpoint}
    r = cli("provision", "up", "--sandbox", "--name", "pulled", cwd=tmp_path, env=env)
    assert r.code == 0, r.err
    from common import state

    box = state.load("pulled")
    run_dir = Path(box.workdir) / "runs" / "r1"
    (run_dir / "out").mkdir(parents=True)
    (run_dir / "out" / "creds").symlink_to("/etc/passwd")
    (run_dir / "exit_code").write_text("0\n")
    records.save_record(
        _record(
            "r1",
            box="pulled",
            host=box.ssh_host,
            port=box.ssh_port,
            user=box.ssh_user,
            identity=box.key_path,
            workdir=box.workdir,
            local_dir=str(tmp_path / "runs" / "r1"),
        )
    )
    r = cli("provision", "down", "--name", "pulled", cwd=tmp_path, env=env)
    assert r.code == RemoteError.exit_code and "--no-pull" in one_line(r.err) and "nothing deleted" in r.err
    assert state.load("pulled") is not None
    r = cli("provision", "down", "--name", "pulled", "--yes", cwd=tmp_path, env=env)
    line = one_line(r.err)
    assert r.code == RemoteError.exit_code and "nothing deleted" in line, r.err
    assert "run r1 was not brought home (refused 1 unsafe entries" in line and "remote pull r1" in line, line
    assert state.load("pulled") is not None
    r = cli("provision", "down", "--name", "pulled", "--yes", "--no-pull", cwd=tmp_path, env=env)
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    assert state.load("pulled") is None


# ---------------------------------------------------------------- 10: what the box prints

HOSTILE = "ok\x1b]0;owned\x07 \x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2J\x9b31m\rline2\ttab\n"


def test_clean_strips_terminal_controls_but_newline_and_tab():
    # whole sequences out (issue 27); the carriage return redrew the line: a file keeps its final state
    assert checks.clean(HOSTILE) == "line2\ttab\n"
    assert checks.clean(HOSTILE, tty=True) == "ok \x1b[31m\rline2\ttab\n"


def test_remote_logs_and_a_followed_log_reach_the_terminal_clean(cli, on_box, box):
    from cli.remote_main import main  # noqa: F401 (the CLI runs in a subprocess)

    run_dir = Path(box.workdir) / "runs" / "20250101-000000-abcd"
    run_dir.mkdir(parents=True)
    (run_dir / "log").write_text(HOSTILE)
    (run_dir / "pid").write_text(f"{os.getpid()}\n")
    (run_dir / "exit_code").write_text("0\n")
    records.save_record(
        _record(
            box=None,
            host="127.0.0.1",
            port=int(on_box[1].rsplit(":", 1)[1]),
            user=on_box[1].split("@")[0],
            identity=on_box[3],
            workdir=box.workdir,
        )
    )
    r = cli("remote", "logs", *on_box)
    assert r.code == 0, r.err
    assert "\x1b" not in r.out and "\x07" not in r.out and "\x9b" not in r.out and "line2\ttab" in r.out


def test_follow_cleans_escape_sequences_split_across_chunks():
    import io

    out = io.BytesIO()
    stream = checks.CleanStream(out)
    data = HOSTILE.encode()
    for i in range(len(data)):
        stream.write(data[i : i + 1])
    assert out.getvalue().decode() == checks.clean(HOSTILE)


# ---------------------------------------------------------------- 11: the small ones


@pytest.mark.parametrize("content", ["", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"])
def test_an_empty_or_truncated_key_is_one_usage_line_at_once(cli, pinned, tmp_path, content):
    key = tmp_path / "key"
    paths.write_private(key, content)
    r = cli("remote", "status", "--host", pinned.spec, "--identity", str(key), "--connect-timeout", "30")
    assert r.code == UsageError.exit_code
    line = one_line(r.err)
    assert str(key) in line and "key" in line


def test_data_rm_of_an_empty_key_is_a_usage_error(cli, on_box):
    r = cli("remote", "data", "rm", "", *on_box)
    assert r.code == UsageError.exit_code
    one_line(r.err)


def test_train_drops_the_literal_double_dash_before_model_args():
    from cli.remote_args import build_parser
    from remote.builtin import train_args

    args, extra = build_parser().parse_known_args(["train", "--epochs", "1", "--", "--label-smoothing", "0.1"])
    assert train_args(args, extra) == ["--epochs", "1", "--label-smoothing", "0.1"]


# ---------------------------------------------------------------- the sweep: every other entry point

# (argv, environment): bad input refused before anything reaches a box or AWS,
# in one line, exit 2. The host is a closed port on 127.0.0.1: a check that
# let a case through would fail with exit 3 instead.
SWEEP = [
    (["remote", "train", "--epochs", "0"], {}),
    (["remote", "train", "--epochs", "1", "--lr", "nan"], {}),
    (["remote", "status", "--connect-timeout", "inf"], {}),
    (["remote", "status", "--host", "a b"], {}),
    (["remote", "status", "--host", "h:notaport"], {}),
    (["remote", "status", "--identity", "/nonexistent/key"], {}),
    (["remote", "status", "--name", "../x"], {}),
    (["remote", "logs", "../../etc/passwd"], {}),
    (["remote", "train", "--resume", "../x"], {}),
    (["remote", "setup"], {"TRAINBOX_INSTALL_RETRIES": "0"}),
    (["remote", "setup"], {"TRAINBOX_INSTALLER": "conda"}),
    (["remote", "data", "rm", "../code"], {}),
    (["remote", "data", "fetch", "ftp://x/y.zip"], {}),
    (["provision", "up", "--max-hours", "-1"], {}),
    (["provision", "up", "--volume-gb", "x"], {}),
    (["provision", "nb", "--port", "0"], {}),
    (["provision", "state", "--name", ""], {}),
    (["provision", "up"], {"TRAINBOX_MAX_HOURS": "inf"}),
    (["provision", "up"], {"TRAINBOX_VOLUME_GB": "-1"}),
    (["provision", "state"], {"TRAINBOX_HOME": "/dev/null"}),
]


@pytest.mark.parametrize("argv,env", SWEEP, ids=[" ".join(a[1:]) + (f" {e}" if e else "") for a, e in SWEEP])
def test_sweep_bad_input_is_one_line_exit_2(capsys, monkeypatch, tmp_path, argv, env):
    from cli.provision_main import main as provision_main
    from cli.remote_main import main as remote_main

    monkeypatch.chdir(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if argv[0] == "remote" and "--host" not in argv and argv[1] != "train":
        argv = [*argv, "--host", "127.0.0.1:1"]
    main = remote_main if argv[0] == "remote" else provision_main
    try:
        code = main(argv[1:])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == UsageError.exit_code, err
    assert "Traceback" not in err and "unexpected" not in err and len(err.strip().splitlines()) == 1, err
