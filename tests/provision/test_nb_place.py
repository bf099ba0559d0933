"""`nb` opens in the pushed project of the latest `remote run` (issue 19)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from provision import sshcmd
from remote import orchestrate, records
from remote.target import Target

# Stands in for the box's python: `-c` checks pass; `-m jupyterlab` says where
# it was started, writes the runtime file a real server writes once it listens,
# and waits to be stopped.
FAKE_PYTHON = """#!/bin/bash
[ "$1" = -c ] && exit 0
pwd > "$(dirname "$JUPYTER_TOKEN_FILE")/started-in"
mkdir -p "$JUPYTER_RUNTIME_DIR" && echo '{}' > "$JUPYTER_RUNTIME_DIR/jpserver-1.json"
exec sleep 60
"""


def test_the_server_starts_in_the_project_dir(tmp_path):
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    project = tmp_path / "trainbox" / "projects" / "my proj-1234abcd"
    project.mkdir(parents=True)
    script = sshcmd.jupyter_start_script(str(python), 8888, str(tmp_path / "jupyter"), "t0ken", root_dir=str(project))
    p = subprocess.run(["bash", "-s"], input=script, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    pid = int((tmp_path / "jupyter" / "pid").read_text())
    try:
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip().splitlines()[-1] == "8888 t0ken"
        assert (tmp_path / "jupyter" / "started-in").read_text().strip() == str(project)
    finally:
        if os.path.exists(f"/proc/{pid}") and Path(f"/proc/{pid}/cmdline").read_bytes().startswith(
            b"sleep"
        ):  # the fake server this test started
            os.kill(pid, 9)


def test_the_latest_run_picks_the_place(tmp_path):
    target = Target("127.0.0.1", 22, "u", None, "trainbox", box="default")
    code = tmp_path / "proj"
    train = records.new_record("r1", target, tmp_path / "runs" / "r1", kind="train", command=["bash"])
    assert orchestrate.notebook_place(train, "trainbox") == (None, None)
    mine = records.new_record(
        "r2",
        target,
        tmp_path / "runs" / "r2",
        kind="run",
        command=["python", "t.py"],
        code=str(code),
        requirements=str(code / "requirements.txt"),
    )
    key = orchestrate.path_key(code)
    assert records.latest("default").run_id == "r2"
    assert orchestrate.notebook_place(mine, "trainbox") == (f"trainbox/projects/{key}", f"trainbox/env-{key}")
