"""A link cut during `down`'s pull (docs/reliability.md): a sandbox box (moto
and the box's own sshd, started by this test's `up`), a run on it whose
results are not home, and `provision down --yes`, whose pull of them is cut
by killing the box's sshd session serving it (linkkit.cut) once the big
checkpoint's temp file appears at home. What must hold: no partial file in
runs/, one line naming what happened and the command that continues, nothing
deleted on AWS, and a second `down` converges (pulls, then deletes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from linkkit import cut, of_fixture

from testkit import Result, one_line_error, start_cli, tagged, wait_for

MB = 1 << 20


@pytest.mark.slow
def test_a_pull_cut_inside_down_deletes_nothing_and_the_second_down_converges(cli, moto_endpoint, tmp_path):
    from remote import records
    from remote.target import resolve
    from sandbox import boxes, sshd

    up = cli("provision", "up", "--sandbox", "--sandbox-box", "process", cwd=tmp_path)
    assert up.code == 0, up.err
    try:
        box = resolve("default")
        run_id = "20260101-000000-abcd"
        run_dir = Path(boxes.box_workdir("default")) / "runs" / run_id
        (run_dir / "out" / "checkpoints").mkdir(parents=True)
        checkpoint = os.urandom(48 * MB)
        (run_dir / "out" / "checkpoints" / "last.keras").write_bytes(checkpoint)
        (run_dir / "log").write_text("epoch 1\n")
        (run_dir / "exit_code").write_text("0\n")
        local = tmp_path / "runs" / run_id
        records.new_record(run_id, box, local)
        server = of_fixture(sshd.running(boxes.box_dir("default") / "sshd"), Path(box.identity or ""))

        out = tmp_path / "down.out"
        proc = start_cli("provision", "down", "--yes", out=out, cwd=tmp_path)
        try:
            wait_for("the pull to be writing the checkpoint", lambda: list(local.rglob(".last.keras.part")), 120)
            cut(server, "tar -c")
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = Path(f"{out}.err").read_text()
        assert code == 69, err
        assert not [p for p in local.rglob("*") if p.name.endswith(".part")], "a cut pull leaves no partial file"
        line = one_line_error(
            Result(
                code,
                "",
                "\n".join(l for l in err.splitlines() if not l.startswith("box 'default' is a sandbox box")),
            )
        )
        assert f"run {run_id} was not brought home (the link to the box dropped during the pull" in line, line
        assert "nothing deleted" in line, line
        assert "provision down" in line and "--no-pull" in line, line
        state = cli("provision", "state", cwd=tmp_path)
        assert state.code == 0 and "running" in state.out, (state.out, state.err)
        assert tagged(moto_endpoint), "nothing was deleted on AWS"

        again = cli("provision", "down", "--yes", cwd=tmp_path)
        assert again.code == 0, again.err
        assert f"pulled run {run_id}" in again.err and "is gone" in again.out, (again.out, again.err)
        assert (local / "checkpoints" / "last.keras").read_bytes() == checkpoint
        assert not tagged(moto_endpoint)
    finally:
        if cli("provision", "state", cwd=tmp_path).code == 0:
            cli("provision", "down", "--yes", "--no-pull", cwd=tmp_path)
