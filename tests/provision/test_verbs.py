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
