"""A pins-changed rebuild of the box's environment never removes one that a
running training job uses (issue 7): a real job, started the way `remote train`
starts it, blocks on a FIFO until the test releases it, while `remote setup`
rebuilds for other pins over the real sshd (with uv: the faster install)."""

from __future__ import annotations

import errno
import os
import subprocess

from box_fixtures import box_user, users_sshd, uv_index  # noqa: F401 (fixtures)
from box_helpers import as_user, env, marker_of, one_line_error, run_cli, wait_for

from box.layout import BoxLayout
from common.errors import RemoteError
from remote import job, setup

# The job's `python -m model train ...`: announces itself, blocks until the test
# writes to the FIFO, then imports from its environment only after the rebuild.
BLOCKING_MODEL = """import os, sys
print("job: waiting", sys.prefix, flush=True)
with open(os.path.expanduser("~/release.fifo")) as f:
    f.read()
import keras, fake_pillow  # lazily, from this job's own environment
print("job: done", sys.prefix, keras.__version__, flush=True)
"""


def start_blocking_job(user, run_id: str) -> str:
    """Start a job whose model blocks on ~/release.fifo; its run dir."""
    from remote.connection import connect, write_file

    code = user.home / "code"
    as_user(user, "mkdir", "-p", str(code / "model"))
    as_user(user, "mkfifo", str(user.home / "release.fifo"))
    conn = connect(user.target(), timeout=10)
    try:
        write_file(conn, f"{code}/model/__init__.py", b"")
        write_file(conn, f"{code}/model/__main__.py", BLOCKING_MODEL.encode())
        layout = BoxLayout("trainbox").at_home(str(user.home))
        run_dir = layout.run(run_id)
        script = job.render_script(
            layout,
            run_id,
            str(code),
            ["python", "-m", "model", "train"],
            data_dir=f"{user.home}/data",
            env_link=layout.env_link,
        )
        job.start(conn, run_dir, script)
    finally:
        conn.close()
    return run_dir


def release(user) -> None:
    """Write to the job's FIFO once it is reading (no reader yet: ENXIO, try again)."""

    def opened():
        try:
            return os.open(user.home / "release.fifo", os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return None
            raise

    fd = wait_for(opened, "the job to open the FIFO")
    os.write(fd, b"go\n")
    os.close(fd)


def job_log(run_dir: str) -> str:
    return open(f"{run_dir}/log").read() if os.path.exists(f"{run_dir}/log") else ""


def test_rebuild_for_new_pins_keeps_the_env_a_running_job_uses(box_user, uv_index):
    first = run_cli(*box_user.remote("setup"), env=env(uv_index))
    assert first.code == 0, first.err
    old = os.path.realpath(box_user.home / "trainbox" / "env")
    run_dir = start_blocking_job(box_user, "r-blocked")
    try:
        wait_for(lambda: "job: waiting" in job_log(run_dir), "the job to start")
        assert f"job: waiting {old}" in job_log(run_dir), "the job runs in the env the link pointed at"

        # Other pins (with jupyterlab): another spec, built while the job runs.
        rebuilt = run_cli(*box_user.remote("setup"), env=env(uv_index, TRAINBOX_JUPYTER="1"))
        assert rebuilt.code == 0, rebuilt.err
        new = os.path.realpath(box_user.home / "trainbox" / "env")
        assert new != old
        assert marker_of(box_user).read_text().splitlines()[0] == f"spec {setup.SetupOptions(jupyter=True).spec_id()}"
        assert "a running job uses it" in rebuilt.err
        assert os.path.exists(f"{old}/bin/python"), "the running job's interpreter is kept"
        assert (
            as_user(box_user, f"{old}/bin/python", "-c", "import keras; print(keras.__version__)")
            == setup.KERAS_VERSION
        )
        assert (
            as_user(box_user, f"{new}/bin/python", "-c", "import fake_jupyterlab, keras; print(keras.__version__)")
            == setup.KERAS_VERSION
        ), "the new env is ready now"
    finally:
        release(box_user)
    wait_for(lambda: os.path.exists(f"{run_dir}/exit_code"), "the job to end")
    assert open(f"{run_dir}/exit_code").read().strip() == "0", job_log(run_dir)
    assert f"job: done {old} {setup.KERAS_VERSION}" in job_log(run_dir)

    # The job is over: the next setup (a no-op for the env itself) removes the old one.
    again = run_cli(*box_user.remote("setup"), env=env(uv_index, TRAINBOX_JUPYTER="1"))
    assert again.code == 0, again.err
    assert "nothing to install" in again.err
    assert not os.path.exists(old)
    assert os.path.exists(f"{new}/bin/python")


def test_a_job_started_after_a_rebuild_uses_the_new_env(box_user, uv_index):
    assert run_cli(*box_user.remote("setup"), env=env(uv_index)).code == 0
    assert run_cli(*box_user.remote("setup"), env=env(uv_index, TRAINBOX_JUPYTER="1")).code == 0
    new = os.path.realpath(box_user.home / "trainbox" / "env")
    run_dir = start_blocking_job(box_user, "r-after")
    release(box_user)
    wait_for(lambda: os.path.exists(f"{run_dir}/exit_code"), "the job to end")
    assert f"job: done {new} {setup.KERAS_VERSION}" in job_log(run_dir)
    assert len(os.listdir(box_user.home / "trainbox" / "envs")) == 1, "the replaced env was removed (no job held it)"


def test_old_layout_env_in_use_by_a_job_is_not_removed(box_user, uv_index):
    """A box set up by an older trainbox: ~/trainbox/env is a plain venv and its jobs hold no lock.
    While such a job runs, a rebuild refuses, in one line naming the run and `remote stop`."""
    venv = box_user.home / "trainbox" / "env"
    as_user(box_user, "python3", "-m", "venv", "--without-pip", str(venv))
    run_dir = box_user.home / "trainbox" / "runs" / "r-old"
    as_user(box_user, "mkdir", "-p", str(run_dir))
    # The old job: the old env's python, its pid in the run dir, alive until its stdin closes.
    blocker = subprocess.Popen(
        [
            "runuser",
            "-u",
            box_user.name,
            "--",
            str(venv / "bin" / "python"),
            "-c",
            "import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); sys.stdin.read()",
            str(run_dir / "pid"),
        ],
        stdin=subprocess.PIPE,
    )
    try:
        wait_for(lambda: (run_dir / "pid").exists() and (run_dir / "pid").read_text(), "the old job to write its pid")
        r = run_cli(*box_user.remote("setup"), env=env(uv_index))
        assert r.code == RemoteError.exit_code
        line = one_line_error(r)
        assert "run r-old is using the environment" in line and "remote stop r-old" in line
        assert (venv / "bin" / "python").exists()
    finally:
        blocker.stdin.close()
        blocker.wait(timeout=30)
    as_user(box_user, "bash", "-c", f"echo 0 > {run_dir}/exit_code")
    r = run_cli(*box_user.remote("setup"), env=env(uv_index))
    assert r.code == 0, r.err
    assert os.path.islink(venv) and marker_of(box_user).exists(), "replaced by the new layout once the job ended"
