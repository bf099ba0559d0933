"""One model for every verb (issue 27 item 4): a sandbox box is found without
flags, `--sandbox` is accepted where it means something, `ls` says plainly
when nothing is left, and a missing `--name` names the boxes that are up.
Real CLI in a subprocess, moto on 127.0.0.1, a real sshd as the box."""

from __future__ import annotations

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
    from provision import sandbox

    assert sandbox.endpoint() is None, "ls started no sandbox"
