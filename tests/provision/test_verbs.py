"""One model for every verb (issue 27 item 4): a sandbox box is found without
flags, `--sandbox` is accepted where it means something, `ls` says plainly
when nothing is left, and a missing `--name` names the boxes that are up.
Real CLI in a subprocess, moto on 127.0.0.1, a real sshd as the box."""

from __future__ import annotations

import pytest
from pvkit import sandbox_box  # noqa: F401

from common.aws import Cloud
from common.errors import UsageError
from provision import lifecycle
from provision.up import UpOptions, up
from sandbox import boxes
from testkit import run_cli


def test_ls_with_nothing_on_aws_says_nothing_is_left(moto_endpoint, tmp_path):
    r = run_cli("provision", "ls", "--region", "us-east-1", cwd=tmp_path)
    assert r.code == 0, r.err
    assert "nothing is up: no boxes, nothing left billing" in r.out


def test_ls_of_a_sandbox_that_is_not_running_says_nothing_is_left(tmp_path):
    """After the last sandbox box is down its moto server is gone, and with it all it held."""
    r = run_cli("provision", "ls", "--sandbox", cwd=tmp_path)
    assert r.code == 0, r.err
    assert r.out.startswith("nothing is up: no boxes, nothing left billing") and "sandbox is not running" in r.out
    j = run_cli("provision", "ls", "--sandbox", "--json", cwd=tmp_path)
    assert j.code == 0 and j.out.strip() == "[]", j.err
    from sandbox import boxes

    assert boxes.endpoint() is None, "ls started no sandbox"


SAID = "box 'default' is a sandbox box"


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    """No AWS credentials anywhere boto3 looks (the sandbox needs none); nothing is asked of the network."""
    without_aws(monkeypatch, tmp_path)


def without_aws(monkeypatch, tmp_path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_every_verb_finds_a_sandbox_box_without_flags_and_says_so_once(sandbox_box, no_aws, tmp_path):
    for argv in (
        ["provision", "state"],
        ["provision", "state", "--sandbox"],
        ["provision", "ip"],
        ["provision", "ip", "--sandbox"],
        ["provision", "ssh", "--", "echo", "hi"],
        ["provision", "ssh", "--sandbox", "--", "echo", "hi"],
        ["remote", "status"],
    ):
        r = run_cli(*argv, cwd=tmp_path, timeout=120)
        assert r.code == 0, (argv, r.err)
        assert r.err.count(SAID) == (0 if "--sandbox" in argv else 1), (argv, r.err)
    assert run_cli("provision", "ip", cwd=tmp_path).out == "127.0.0.1\n", "the note is on stderr"
    assert run_cli("provision", "ssh", "--", "echo", "hi", cwd=tmp_path).out.strip() == "hi"


def test_every_box_verb_accepts_sandbox(tmp_path):
    """One flag for all: each verb's --help offers --sandbox (argparse refused it on `state`)."""
    for verb in ("up", "state", "start", "stop", "ip", "ssh", "nb", "ls", "down", "image create", "image ls"):
        r = run_cli("provision", *verb.split(), "--help", cwd=tmp_path)
        assert r.code == 0 and "--sandbox" in r.out, (verb, r.out, r.err)


def aws_box(name: str) -> None:
    """A box `up` made on AWS (moto, named in AWS_ENDPOINT_URL; nothing waits for its SSH)."""
    cloud = Cloud("us-east-1")
    ami = cloud.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    up(cloud, UpOptions(name=name, ssh_cidr="203.0.113.7/32", wait=False, ami=ami), lambda s: None)


def test_sandbox_asked_of_an_aws_box_is_refused(moto_endpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    aws_box("onaws")
    r = run_cli("provision", "state", "--sandbox", "--name", "onaws", cwd=tmp_path)
    assert r.code == UsageError.exit_code, r.err
    assert "box 'onaws' is on AWS (us-east-1), not in the sandbox" in r.err
    assert run_cli("provision", "state", "--name", "onaws", cwd=tmp_path).code == 0


def test_a_sandbox_session_without_aws_credentials_needs_no_flags_and_ls_says_when_nothing_is_left(no_aws, tmp_path):
    """The README's flow on a machine with no AWS account: trainbox's own sandbox (its moto server
    started by `up --sandbox`, stopped by `down`), then `ls` says plainly that nothing is left."""
    assert run_cli("provision", "up", "--sandbox", cwd=tmp_path).code == 0
    try:
        st = run_cli("provision", "state", cwd=tmp_path)
        assert st.code == 0 and st.err.count(SAID) == 1, st.err
        ls = run_cli("provision", "ls", cwd=tmp_path)
        assert ls.code == 0, ls.err
        assert [line.split()[:2] for line in ls.out.splitlines()][1] == ["default", "instance"], ls.out
        assert ls.err.count("listing the sandbox") == 1 and "AWS was not checked" in ls.err, ls.err
        assert "error" not in ls.err
    finally:
        down = run_cli("provision", "down", "--yes", cwd=tmp_path)
    assert down.code == 0, down.err
    assert down.err.count(SAID) == 1, down.err
    for argv in (["ls"], ["ls", "--sandbox"]):
        r = run_cli("provision", *argv, cwd=tmp_path)
        assert r.code == 0, (argv, r.err)
        assert r.out.startswith("nothing is up: no boxes, nothing left billing"), (argv, r.out)
        assert "sandbox is not running" in r.out, (argv, r.out)
    assert "no AWS credentials: AWS was not checked" in run_cli("provision", "ls", cwd=tmp_path).out
    assert boxes.endpoint() is None, "ls started no sandbox"


def test_ls_of_a_running_sandbox_without_aws_credentials_lists_it(moto_endpoint, no_aws, tmp_path, monkeypatch):
    """No state names the default box, the sandbox runs another: `ls` lists the sandbox, not the credentials error."""
    monkeypatch.chdir(tmp_path)
    up(Cloud(boxes.REGION, moto_endpoint, sandbox=True), UpOptions(name="gpu2"), lambda s: None)
    r = run_cli("provision", "ls", cwd=tmp_path)
    assert r.code == 0, r.err
    assert "gpu2" in r.out and "instance" in r.out
    assert "listing the sandbox (no AWS credentials: AWS was not checked)" in r.err, r.err
    lifecycle.destroy(Cloud(boxes.REGION, moto_endpoint, sandbox=True), "gpu2", lambda s: None)
    r = run_cli("provision", "ls", cwd=tmp_path)
    assert r.code == 0 and r.out.startswith("nothing is up: no boxes, nothing left billing in the sandbox"), r.out


def error_line(r) -> str:
    (line,) = [line for line in r.err.splitlines() if line.startswith("error:")]
    return line


def test_a_missing_or_unknown_name_names_the_boxes_this_laptop_knows(moto_endpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sandboxed = Cloud(boxes.REGION, moto_endpoint, sandbox=True)
    up(sandboxed, UpOptions(name="gpu2"), lambda s: None)
    aws_box("onaws")
    try:
        for argv in (
            ["provision", "state"],
            ["provision", "ip", "--name", "x"],
            ["provision", "ssh", "--name", "x"],
            ["remote", "status"],
            ["remote", "data", "ls", "--name", "x"],
        ):
            r = run_cli(*argv, cwd=tmp_path)
            assert r.code == UsageError.exit_code, (argv, r.err)
            name = argv[argv.index("--name") + 1] if "--name" in argv else "default"
            line = error_line(r)
            assert f"no box '{name}' here; known: gpu2 (sandbox), onaws" in line, (argv, line)
            assert "pass --name with one of them" in line, (argv, line)
        # With no AWS credentials, a name known nowhere here is no box (not the credentials error).
        lifecycle.destroy(Cloud("us-east-1"), "onaws", lambda s: None)
        without_aws(monkeypatch, tmp_path)
        r = run_cli("provision", "state", cwd=tmp_path)
        assert r.code == UsageError.exit_code, r.err
        line = error_line(r)
        assert "no box 'default' here; known: gpu2 (sandbox)" in line and "pass --name gpu2" in line, line
        assert "AWS was not checked: no AWS credentials" in line, line
    finally:
        lifecycle.destroy(sandboxed, "gpu2", lambda s: None)


def test_up_of_a_sandbox_box_without_flags_reuses_it_in_the_sandbox(sandbox_box, tmp_path):
    """A name is one box: `up` after `up --sandbox` starts or reuses the sandbox's box, not one on AWS.
    (--ssh-cidr and --no-wait: were it to go to AWS, nothing would look up this machine's IP or wait on moto's.)"""
    r = run_cli("provision", "up", "--no-wait", "--ssh-cidr", "203.0.113.7/32", cwd=tmp_path)
    assert r.code == 0, r.err
    assert r.err.count(SAID) == 1 and "checking AWS (us-east-1, sandbox)" in r.err, r.err
    assert f"{sandbox_box.instance_id} g4dn.xlarge at 127.0.0.1:{sandbox_box.ssh_port}" in r.out, r.out
