"""box/keep.py: a --recover box's runs mirrored to a real moto server on 127.0.0.1 and restored
into an empty workdir at the same paths; the requests counted at box/s3.py's transport."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from box import keep, s3
from box.agent import RunFolder, resume_interrupted

BUCKET = "trainbox-123456789012-us-east-1"
PREFIX = "boxes/b1/"


class Counting:
    """box/s3.py's own transport, each request counted by method."""

    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, req: s3.Request):
        self.calls.append(req.method)
        return s3.urlopen_transport(req)


@pytest.fixture
def store(moto_endpoint, monkeypatch):
    import boto3

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(k, v)
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    return moto_endpoint


def keeper(endpoint: str, workdir: Path, boot: str, instance: str) -> tuple[keep.Keeper, Counting]:
    counting = Counting()
    client = s3.S3(BUCKET, "us-east-1", endpoint, s3.CredentialSource(None), counting)
    runs = workdir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    return keep.Keeper(client, keep.Store(BUCKET, PREFIX), str(runs), boot, instance, log=lambda s: None), counting


def make_run(workdir: Path, rid: str, boot: str, finished=False, stopped=False, env_link: str | None = None) -> Path:
    project = workdir / "projects" / "p-1"
    (project / "pkg").mkdir(parents=True, exist_ok=True)
    (project / "train.py").write_text("print('train')\n")
    (project / "pkg" / "__init__.py").write_text("X = 1\n")
    data = workdir / "data" / "d-1"
    data.mkdir(parents=True, exist_ok=True)
    (data / "a.csv").write_text("1,2\n" * 100)
    run = workdir / "runs" / rid
    (run / "out" / "backup").mkdir(parents=True)
    spec = {
        "run_id": rid,
        "project_dir": str(project),
        "data_dir": str(data),
        "data": {"key": "d-1", "source": "local", "fetch": None},
        "env_link": env_link,
        "backend": "tensorflow",
        "command": ["python", "train.py"],
        "out": "out",
    }
    (run / "run.json").write_text(json.dumps(spec))
    (run / "run.sh").write_text("#!/bin/bash\necho $$ > pid\n")
    (run / "pid").write_text("4242\n")
    (run / "boot_id").write_text(boot + "\n")
    (run / "log").write_text("epoch 1\n")
    (run / "resumed").write_text("0\n")
    (run / "events").write_text('{"event": "spot-notice", "at": 1}\n')
    (run / "out" / "history.json").write_text('[{"epoch": 0}]')
    (run / "out" / "backup" / "state.weights.h5").write_bytes(b"\x89HDF" + bytes(3000))
    if finished:
        (run / "exit_code").write_text("0\n")
    if stopped:
        (run / "stopped").touch()
    return run


def files_under(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def test_a_mirrored_run_comes_back_whole_on_a_new_instance(store, tmp_path):
    old = tmp_path / "old" / "trainbox"
    run = make_run(old, "r1", "boot-a")
    k, _ = keeper(store, old, "boot-a", "i-aaa")
    assert k.mirror(final=True) > 0  # the instance's last mirror, as it shuts down
    state = json.loads(k.s3.get_bytes(f"{PREFIX}runs/r1/state.json"))
    assert state["exit_code"] is None and state["stopped"] is False and state["instance"] == "i-aaa"
    assert state["final"] is True
    before_run, before_code, before_data = files_under(run), files_under(old / "projects"), files_under(old / "data")

    # The instance is gone with its disk: a new one has the same absolute paths, and nothing in them.
    import shutil

    shutil.rmtree(old)
    k2, _ = keeper(store, old, "boot-b", "i-bbb")
    assert k2.restore(ready_wait_s=0) == ["r1"]
    after = files_under(run)
    events = [json.loads(line) for line in after.pop("events").decode().splitlines()]
    assert events[-1]["event"] == "restored"
    assert events[-1]["from_instance"] == "i-aaa" and events[-1]["instance"] == "i-bbb"
    assert after == {n: b for n, b in before_run.items() if n != "events"}
    assert files_under(old / "projects") == before_code
    assert files_under(old / "data") == before_data
    # An earlier instance's run: the agent resumes it as after any reboot.
    assert RunFolder(str(run)).interrupted("boot-b")
    started = resume_interrupted(str(old / "runs"), "boot-b", pid_wait_s=5)
    assert [Path(r.path).name for r in started] == ["r1"]


def test_unchanged_files_are_not_uploaded_again(store, tmp_path):
    wd = tmp_path / "trainbox"
    run = make_run(wd, "r1", "boot-a")
    k, counting = keeper(store, wd, "boot-a", "i-aaa")
    k.mirror()
    first = list(counting.calls)
    assert first.count("PUT") >= 12, first  # spec, script, 6 own files, 2 out files, code, data, state
    counting.calls.clear()
    assert k.mirror() == 0
    assert counting.calls == [], "a poll where nothing changed makes no request"

    # One checkpoint saved again: that file and the state, nothing else.
    (run / "out" / "backup" / "state.weights.h5").write_bytes(b"\x89HDF" + bytes(4000))
    assert k.mirror() == 2
    assert counting.calls == ["PUT", "PUT"]

    # An agent restarted mid-run lists the run once and uploads nothing it already holds.
    k2, counting2 = keeper(store, wd, "boot-a", "i-aaa")
    k2.mirror()
    assert counting2.calls.count("PUT") <= 2, counting2.calls  # the code's name and state.json at most


def test_a_file_gone_from_out_goes_from_the_store(store, tmp_path):
    wd = tmp_path / "trainbox"
    run = make_run(wd, "r1", "boot-a")
    k, _ = keeper(store, wd, "boot-a", "i-aaa")
    k.mirror()
    (run / "out" / "backup" / "state.weights.h5").unlink()  # BackupAndRestore removes its backup at the end
    k.mirror()
    keys = {o.key for o in k.s3.list(f"{PREFIX}runs/r1/out/")}
    assert keys == {f"{PREFIX}runs/r1/out/history.json"}


@pytest.mark.parametrize("how", ["finished", "stopped"])
def test_a_run_over_is_not_restored_and_is_mirrored_once_more_then_never(store, tmp_path, how):
    wd = tmp_path / "old" / "trainbox"
    run = make_run(wd, "r1", "boot-a", **{how: True})
    k, counting = keeper(store, wd, "boot-a", "i-aaa")
    k.mirror()
    state = json.loads(k.s3.get_bytes(f"{PREFIX}runs/r1/state.json"))
    assert (state["exit_code"], state["stopped"]) == ((0, False) if how == "finished" else (None, True))
    (run / "log").write_text("more\n")
    counting.calls.clear()
    assert k.mirror() == 0 and counting.calls == []

    new = tmp_path / "new" / "trainbox"
    k2, _ = keeper(store, new, "boot-b", "i-bbb")
    assert k2.restore(ready_wait_s=0) == []
    assert not (new / "runs" / "r1").exists()


def test_a_run_already_here_is_not_restored_over(store, tmp_path):
    wd = tmp_path / "trainbox"
    make_run(wd, "r1", "boot-a")
    k, _ = keeper(store, wd, "boot-a", "i-aaa")
    k.mirror()
    (wd / "runs" / "r1" / "log").write_text("local\n")
    k2, _ = keeper(store, wd, "boot-b", "i-aaa")
    assert k2.restore(ready_wait_s=0) == []
    assert (wd / "runs" / "r1" / "log").read_text() == "local\n"


def test_the_restore_waits_for_the_environment_bounded(store, tmp_path):
    old = tmp_path / "trainbox"
    env = tmp_path / "trainbox" / "env"
    make_run(old, "r1", "boot-a", env_link=str(env))
    k, _ = keeper(store, old, "boot-a", "i-aaa")
    k.mirror(final=True)
    import shutil

    shutil.rmtree(old)
    said: list[str] = []
    k2, _ = keeper(store, old, "boot-b", "i-bbb")
    k2.log = said.append
    assert k2.restore(ready_wait_s=0.2) == ["r1"]
    assert any("not ready" in s for s in said), said


def test_store_url_parsing():
    assert keep.Store.parse("s3://b/boxes/x") == keep.Store("b", "boxes/x/")
    with pytest.raises(ValueError):
        keep.Store.parse("https://b/boxes/x/")


def test_a_failed_environment_build_ends_the_wait_at_once(store, tmp_path):
    """The new instance's bootstrap ended without making the environment ready: the restore says
    so and goes on, instead of waiting its whole bound (30 min) in silence."""
    import time

    old = tmp_path / "trainbox"
    env = old / "env"
    make_run(old, "r1", "boot-a", env_link=str(env))
    k, _ = keeper(store, old, "boot-a", "i-aaa")
    k.mirror(final=True)
    import shutil

    import boto3

    boto3.client("s3", endpoint_url=store, region_name="us-east-1").put_object(
        Bucket=BUCKET, Key=PREFIX + "bootstrap.sh", Body=b"exit 3\n"
    )

    shutil.rmtree(old)
    said: list[str] = []
    k2, _ = keeper(store, old, "boot-b", "i-bbb")
    k2.log = said.append
    assert k2.start_bootstrap()
    started = time.monotonic()
    assert k2.restore(ready_wait_s=600) == ["r1"]
    assert time.monotonic() - started < 60
    assert any("the environment's build ended" in s and "setup.log" in s for s in said), said


def test_a_run_another_instance_still_mirrors_is_restored_only_once_that_instance_is_done(store, tmp_path):
    """Capacity rebalancing launches the new instance before it terminates the old one, whose agent
    goes on mirroring the run: the new one waits (bounded) until the old one's last mirror (its
    state says final) or its state goes stale, so the run never trains on both at once."""
    import shutil
    import threading
    import time

    old = tmp_path / "trainbox"
    make_run(old, "r1", "boot-a")
    k, _ = keeper(store, old, "boot-a", "i-aaa")
    k.mirror()  # the old instance still runs: not its last word
    snapshot = tmp_path / "old-disk"
    shutil.copytree(old, snapshot)
    shutil.rmtree(old)  # the new instance's disk: nothing of the run
    said: list[str] = []
    k2, _ = keeper(store, old, "boot-b", "i-bbb")
    k2.log = said.append

    def old_instance_shuts_down():
        k.runs = str(snapshot / "runs")  # its own disk, elsewhere on this machine
        k.mirror(final=True)

    timer = threading.Timer(1.5, old_instance_shuts_down)
    started = time.monotonic()
    timer.start()
    try:
        assert k2.restore(ready_wait_s=0, quiet_wait_s=60) == ["r1"]
    finally:
        timer.join()
    assert time.monotonic() - started >= 1.5
    assert any("i-aaa still mirrors it" in s for s in said), said
    events = [json.loads(line) for line in (old / "runs" / "r1" / "events").read_text().splitlines()]
    assert events[-1]["event"] == "restored" and events[-1]["from_instance"] == "i-aaa"
