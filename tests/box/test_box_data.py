"""Data on the default workdir: relative `trainbox` under the login user's home,
what every AWS box and every `--host` box gets (issue 20). A fresh login user
behind a real sshd trains for real on a set from a URL, from S3 and from a
local folder; the box's environment comes from the bootstrap (its TensorFlow
wheel is a .pth onto this laptop's site-packages: nothing is downloaded).
"""

from __future__ import annotations

import json

import boto3
import pytest
from box_fixtures import box_user, laptop_index, users_sshd  # noqa: F401 (fixtures)
from box_helpers import env, one_line_error, run_cli

from common.errors import UsageError
from testkit import served_tar_gz, synth_image_set


@pytest.fixture
def served_set(tmp_path):
    """A two-class set as set.tar.gz behind a file server on 127.0.0.1."""
    root = synth_image_set(tmp_path / "set", n=12)
    with served_tar_gz(root) as url:
        yield root, url


@pytest.mark.slow
def test_url_s3_and_local_data_train_on_the_default_relative_workdir(
    box_user, laptop_index, served_set, moto_endpoint, tmp_path
):
    root, url = served_set
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket="cats")
    for f in root.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "cats", f"set/{f.relative_to(root)}")
    e = env(laptop_index, TRAINBOX_BOX_PYTHON="/usr/bin/python3", AWS_ENDPOINT_URL=moto_endpoint)
    for n, data in enumerate((url, "s3://cats/set/", str(root))):
        work = tmp_path / f"work{n}"
        work.mkdir()
        r = run_cli(
            *box_user.remote("train", "--epochs", "1", "--image-size", "32", "--pull-every", "600", "--data", data),
            cwd=work,
            env=e,
        )
        assert r.code == 0, f"--data {data}: " + r.err + r.out
        (run,) = list((work / "runs").iterdir())
        assert len(json.loads((run / "history.json").read_text())["loss"]) == 1
        script = (box_user.home / "trainbox" / "runs" / run.name / "run.sh").read_text()
        assert f"TRAINBOX_DATA={box_user.home}/trainbox/data/" in script, script


def test_a_local_folder_that_is_no_data_set_is_refused_before_anything_is_sent(box_user, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("not images")
    r = run_cli(*box_user.remote("train", "--epochs", "1", "--data", str(notes)), cwd=tmp_path)
    assert r.code == UsageError.exit_code, r.err + r.out
    line = one_line_error(r)
    assert str(notes) in line and "train/" in line and "validation/" in line
    assert not (box_user.home / "trainbox").exists()  # nothing was sent, not even the code


def test_a_local_kaggle_flat_folder_is_refused_with_the_organize_command(box_user, tmp_path):
    flat = tmp_path / "kaggle" / "train"
    flat.mkdir(parents=True)
    for i in range(3):
        (flat / f"cat.{i}.jpg").write_bytes(b"x")
        (flat / f"dog.{i}.jpg").write_bytes(b"x")
    r = run_cli(*box_user.remote("train", "--epochs", "1", "--data", str(flat)), cwd=tmp_path)
    assert r.code == UsageError.exit_code, r.err + r.out
    assert f"python -m model organize --src {flat}" in one_line_error(r)
    assert not (box_user.home / "trainbox").exists()
