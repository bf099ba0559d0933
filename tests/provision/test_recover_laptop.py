"""The laptop's side of a --recover box (issue 25, item 4 and 5): `remote pull` from S3 when
no instance answers, `remote status` and `remote runs` with the group's replacements, and
`down` that pulls from S3 first. moto on 127.0.0.1 is AWS (the group, S3); the process box
is each instance. The objects these tests put in S3 stand in for what the box's agent writes
(box/layout.py, "A --recover box's runs in S3"); the agent itself is tested with the box."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pvkit import client_error, run_ssh  # noqa: F401
from test_recover_sandbox import group_box  # noqa: F401 (the fixture)

from cli.provision_main import main as provision_main
from cli.remote_main import main as remote_main
from common import state
from common.aws import Cloud
from common.errors import CloudError
from provision import lifecycle, recover
from remote import records, store_pull
from remote.target import resolve
from sandbox import boxes
from testkit import tagged

MODEL = bytes(range(256)) * 8192  # 2 MiB: more than one chunk of a download
LOG = b"epoch 1/2\nepoch 2/2\n"


def store(box) -> tuple:
    s = state.load(box.name).extra["store"]
    return Cloud(boxes.REGION, state.load(box.name).endpoint_url, sandbox=True).client("s3"), s["bucket"], s["prefix"]


def put_run(box, run_id: str, exit_code: int | None = 0) -> None:
    """What the box's agent mirrors of a run (standing in for it)."""
    s3, bucket, prefix = store(box)
    under = f"{prefix}runs/{run_id}/"
    objects = {
        "run.json": b"{}",
        "run.sh": b"#!/bin/bash\n",
        "files/log": LOG,
        "files/events": json.dumps({"event": "resumed", "at": 1.0}).encode() + b"\n",
        "out/model.keras": MODEL,
        "out/checkpoints/epoch-2.keras": b"ckpt",
        "state.json": json.dumps({"exit_code": exit_code, "stopped": False, "instance": "i-x", "at": 2.0}).encode(),
    }
    if exit_code is not None:
        objects["files/exit_code"] = f"{exit_code}\n".encode()
    for rel, body in objects.items():
        s3.put_object(Bucket=bucket, Key=under + rel, Body=body)


def record_run(box, tmp_path: Path, run_id: str) -> records.RunRecord:
    return records.new_record(run_id, resolve(box.name), tmp_path / "runs" / run_id)


def prefix_keys(where: tuple) -> list[str]:
    s3, bucket, prefix = where
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def no_part_files(d: Path) -> bool:
    return not [p for p in d.rglob("*") if p.name.endswith(".part")]


def test_pull_reads_s3_when_no_instance_answers(group_box, tmp_path, capsys):
    cloud, box = group_box
    rec = record_run(box, tmp_path, "20250101-000000-aaaa")
    put_run(box, rec.run_id)
    boxes.stop_box(box.name)  # no instance answers (the group replaces it when next asked)
    capsys.readouterr()
    assert remote_main(["pull", rec.run_id, "--connect-timeout", "2"]) == 0
    out, err = capsys.readouterr()
    local = Path(rec.local_dir)
    assert (local / "model.keras").read_bytes() == MODEL
    assert (local / "checkpoints" / "epoch-2.keras").read_bytes() == b"ckpt"
    assert (local / "train.log").read_bytes() == LOG and (local / "exit_code").read_text() == "0\n"
    assert (local / "run.sh").exists() and (local / "events").exists()
    assert not (local / "state.json").exists() and not (local / "run.json").exists()
    assert no_part_files(local)
    _, bucket, prefix = store(box)
    assert f"from s3://{bucket}/{prefix}runs/{rec.run_id}/" in out and "succeeded" in out
    assert "pulling it from S3" in err
    again = records.load_record(rec.run_id)
    assert again.pulled and again.exit_code == 0


class _CutBody:
    """An S3 body whose stream breaks after its first bytes (a cut link)."""

    def __init__(self, body):
        self.body, self.served = body, False

    def read(self, n=-1):
        from botocore.exceptions import ReadTimeoutError

        if self.served:
            raise ReadTimeoutError(endpoint_url="s3")
        self.served = True
        return self.body.read(1000)


class _CutS3:
    def __init__(self, s3, key_end: str):
        self.s3, self.key_end = s3, key_end

    def __getattr__(self, name):
        return getattr(self.s3, name)

    def get_object(self, **kw):
        got = self.s3.get_object(**kw)
        if kw["Key"].endswith(self.key_end):
            got["Body"] = _CutBody(got["Body"])
        return got


def test_a_cut_download_from_s3_leaves_no_partial_file(group_box, tmp_path):
    cloud, box = group_box
    put_run(box, "20250101-000000-bbbb")
    s3, bucket, prefix = store(box)
    local = tmp_path / "runs" / "cut"
    with pytest.raises(CloudError) as e:
        store_pull.pull_run(_CutS3(s3, "out/model.keras"), bucket, prefix, "20250101-000000-bbbb", local)
    assert "remote pull" in str(e.value)
    assert not (local / "model.keras").exists() and no_part_files(local)
    got = store_pull.pull_run(s3, bucket, prefix, "20250101-000000-bbbb", local)  # again: whole
    assert (local / "model.keras").read_bytes() == MODEL and "model.keras" in got.files


def test_status_and_runs_show_the_replacement_with_its_zone_and_type(group_box, tmp_path, capsys):
    cloud, box = group_box
    rec = record_run(box, tmp_path, "20250101-000000-cccc")
    cloud.client("ec2").terminate_instances(InstanceIds=[box.instance_id])
    new = lifecycle.status(cloud, box.name)
    moved = state.load(box.name)
    entry = moved.extra["replaced"][-1]
    assert (entry["instance"], entry["by"]) == (box.instance_id, new.instance_id)
    # The agent's restore of the run on the new instance, stood in for: the run folder, over.
    run_dir = f"{moved.workdir}/runs/{rec.run_id}"
    p = run_ssh(moved, f"mkdir -p {run_dir} && echo 0 > {run_dir}/exit_code")
    assert p.returncode == 0, p.stderr
    capsys.readouterr()
    assert remote_main(["status", rec.run_id]) == 0
    out = capsys.readouterr().out
    said = (
        f"instance {box.instance_id} was terminated; the group replaced it by {new.instance_id} "
        f"({entry['type']} in {entry['zone']})"
    )
    assert f"{rec.run_id} succeeded" in out and said in out, out
    assert remote_main(["runs"]) == 0
    table = capsys.readouterr().out
    assert "box interrupted 1, cut, replaced 1x (" in table and f"{entry['type']} in {entry['zone']})" in table, table
    assert remote_main(["runs", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert "replaced 1x" in row["interrupted"]


def test_down_pulls_the_runs_from_s3_first_then_leaves_nothing(moto_endpoint, group_box, tmp_path, capsys):
    cloud, box = group_box
    rec = record_run(box, tmp_path, "20250101-000000-dddd")
    put_run(box, rec.run_id)  # the instance that ran it was replaced: only S3 has it
    where = store(box)
    assert provision_main(["down", "--yes"]) == 0
    err = capsys.readouterr().err
    assert f"pulled run {rec.run_id} (" in err and "from s3://" in err
    assert (Path(rec.local_dir) / "model.keras").read_bytes() == MODEL
    assert records.load_record(rec.run_id).pulled
    assert tagged(moto_endpoint) == []
    assert prefix_keys(where) == []
    assert provision_main(["down", "--yes"]) != 0 or tagged(moto_endpoint) == []  # again: nothing to do


def test_down_keep_checkpoints_keeps_the_prefix(moto_endpoint, group_box, tmp_path):
    cloud, box = group_box
    rec = record_run(box, tmp_path, "20250101-000000-eeee")
    put_run(box, rec.run_id, exit_code=None)
    s3, bucket, prefix = store(box)
    assert provision_main(["down", "--yes", "--keep-checkpoints"]) == 0
    assert (Path(rec.local_dir) / "model.keras").exists()
    assert tagged(moto_endpoint) == []
    assert f"{prefix}runs/{rec.run_id}/out/model.keras" in [
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    ]


def test_down_with_the_group_already_gone_cleans_the_rest(moto_endpoint, group_box):
    cloud, box = group_box
    put_run(box, "20250101-000000-ffff")
    where = store(box)
    recover.delete_scaling_group(cloud.client("autoscaling"), recover.group_name(box.name), poll_s=0.2)
    lifecycle.destroy(cloud, box.name, lambda s: None)
    assert tagged(moto_endpoint) == []
    assert prefix_keys(where) == []
    iam = cloud.client("iam")
    assert [r for r in iam.list_roles(PathPrefix="/trainbox/")["Roles"] if r["RoleName"].endswith(box.name)] == []
    lifecycle.destroy(cloud, box.name, lambda s: None)  # every step again: nothing left, no error


JOB = """\
import os, pathlib, time
out = pathlib.Path(os.environ["TRAINBOX_OUT"])
out.mkdir(parents=True, exist_ok=True)
print("start", flush=True)
while not (out.parent / "release").exists():
    time.sleep(0.05)
(out / "result.txt").write_text("done")
print("finish", flush=True)
"""
NOT_RESTORED = ("pid", "pid-start", "boot_id", "exit_code", "stopped")  # the agent restores files/, not these


def test_a_followed_run_rides_through_the_group_replacing_its_instance(group_box, tmp_path):
    """`remote run` followed on a --recover box whose instance EC2 terminates: the follower says
    which instance replaced it, waits, and follows the resumed log from the byte it had.

    STAND-IN: the new instance's agent (box/, H1's) restores the run from S3 and resumes it.
    Here the test does it instead: it copies the old instance's project and run folder (less
    the pid, boot and exit files, which S3 does not hold) to the new box's disk, at the same
    path, and starts the run's own run.sh there, as the agent does. The end-to-end test on the
    container box runs the real agent."""
    import shutil

    from remote import job
    from testkit import start_cli, wait_for

    cloud, box = group_box
    code = tmp_path / "proj"
    code.mkdir()
    (code / "job.py").write_text(JOB)
    out = tmp_path / "follow.out"
    err = Path(f"{out}.err")
    follower = start_cli("remote", "run", "--code", str(code), "--", "python", "job.py", out=out, cwd=tmp_path)
    try:
        workdir = Path(box.workdir)
        run = wait_for(
            "the run to start",
            lambda: next((d for d in (workdir / "runs").glob("2*") if b"start" in _bytes(d / "log")), None),
            timeout=180,
        )
        wait_for("the follower to stream the log", lambda: "start" in out.read_text(), timeout=60)
        saved = tmp_path / "s3-stand-in"
        shutil.copytree(workdir, saved, ignore=lambda d, names: [n for n in names if n in NOT_RESTORED])
        cloud.client("ec2").terminate_instances(InstanceIds=[box.instance_id])  # a spot reclaim ...
        boxes.stop_box(box.name)  # ... and its machine goes with it: the follower's link drops
        # The follower (the laptop) asks the group, moves the state to its new instance (which
        # the sandbox gives a box of its own), and says so.
        wait_for(
            "the follower to name the replacement", lambda: "was terminated (spot)" in err.read_text(), timeout=120
        )
        moved = state.load(box.name)
        entry = moved.extra["replaced"][-1]
        assert entry["instance"] == box.instance_id and entry["by"] == moved.instance_id
        said = (
            f"instance {box.instance_id} was terminated (spot); {entry['by']} in {entry['zone']} "
            f"is resuming run {run.name}"
        )
        assert said in err.read_text()
        wait_for("the follower to wait for the run", lambda: f"resume run {run.name}" in err.read_text(), timeout=60)
        new_workdir = Path(moved.workdir)
        assert not (new_workdir / "runs" / run.name).exists()  # a fresh disk: the restore is what brings it
        shutil.copytree(saved, new_workdir, dirs_exist_ok=True)
        p = run_ssh(moved, job.start_command(str(new_workdir / "runs" / run.name)))
        assert p.returncode == 0, p.stderr
        wait_for(
            "the resumed run to print", lambda: _bytes(new_workdir / "runs" / run.name / "log").count(b"start") == 2
        )
        (new_workdir / "runs" / run.name / "release").touch()
        code_ = follower.wait(timeout=120)
    finally:
        if follower.poll() is None:
            follower.terminate()
            follower.wait()
    text = err.read_text()
    assert code_ == 0, text[-3000:]
    assert text.count(said) == 1 and "the box is back: following the run" in text
    log = (new_workdir / "runs" / run.name / "log").read_text()
    assert out.read_text().count("start") == 2 and out.read_text().rstrip().endswith("finish")
    home = tmp_path / "runs" / run.name
    assert (home / "result.txt").read_text() == "done"
    assert (home / "train.log").read_text() == log  # every byte once: followed on from the offset it had
    assert log in out.read_text()


def _bytes(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError:
        return b""


def test_the_wait_for_the_replacement_to_resume_the_run_is_bounded(group_box, tmp_path, monkeypatch, capsys):
    """`remote logs --follow` after the group replaced the instance (and another command moved
    the state to the new one): said once, waited for, and after the bound (a few seconds here)
    a one-line error with what to do. No agent restores the run here, so the wait runs out."""
    from cli import remote_follow

    cloud, box = group_box
    rec = record_run(box, tmp_path, "20250101-000000-gggg")
    cloud.client("ec2").terminate_instances(InstanceIds=[box.instance_id])
    lifecycle.status(cloud, box.name)  # another command (`provision state`) followed the group first
    monkeypatch.setattr(remote_follow, "REPLACEMENT_WAIT_S", 3.0)
    capsys.readouterr()
    code = remote_main(["logs", rec.run_id, "--follow"])
    err = capsys.readouterr().err
    moved = state.load(box.name)
    assert code == CloudError.exit_code, err
    assert err.count(f"instance {box.instance_id} was terminated (spot); {moved.instance_id} in ") == 1
    assert f"waiting for {moved.instance_id} to answer SSH and resume run {rec.run_id}" in err
    assert f"run {rec.run_id} was not resumed on {moved.instance_id} within 3 s" in err
    assert f"`remote pull {rec.run_id}` brings home what S3 has" in err


def test_a_follower_of_a_stopped_group_says_so_instead_of_waiting(group_box, tmp_path, capsys):
    """`provision stop` (or the guard) set the group to 0: no instance comes back by itself, so the
    follower ends at once with the stop's one line and `provision start`, not a wait with no end."""
    cloud, box = group_box
    rec = record_run(box, tmp_path, "20250101-000000-hhhh")
    lifecycle.stop(cloud, box.name)
    capsys.readouterr()
    code = remote_main(["logs", rec.run_id, "--follow"])
    err = capsys.readouterr().err
    assert code == CloudError.exit_code, err
    assert f"box '{box.name}' is stopped: its group" in err and "python -m provision start" in err
    assert "waiting" not in err
