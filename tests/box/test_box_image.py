"""trainbox images on real boxes: the clean-up before imaging, over a real sshd as
a fresh login user (nothing of the user's is left; the environment still works);
the boot-time user-data on a disk whose environment is ready installs nothing;
and the whole flow in the sandbox: bake, `down`, the next `up` is ready with no
install step, `image rm` leaves nothing."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from box_fixtures import box_user, index, users_sshd  # noqa: F401 (fixtures)
from box_helpers import as_user, box_python_says, env, log_of, marker_of, run_cli, wait_for

from remote import bake, setup
from sandbox import images as sandbox_images


def ready_box(user, index) -> None:
    r = run_cli(*user.remote("setup"), env=env(index))
    assert r.code == 0, r.err
    assert marker_of(user).exists()


def plant(user) -> None:
    """The user's things, as a day of training leaves them (made as the user)."""
    script = """set -e
cd ~
mkdir -p trainbox/runs/r1 trainbox/data/flowers trainbox/code/model trainbox/jupyter .ssh .cache/uv .keras/datasets
echo epoch > trainbox/runs/r1/log; echo 99999999 > trainbox/runs/r1/pid; echo 0 > trainbox/runs/r1/exit_code
echo jpeg > trainbox/data/flowers/a.jpg; echo code > trainbox/code/model/train.py; echo tok > trainbox/jupyter/token
echo 'ssh-ed25519 AAAA user@laptop' > .ssh/authorized_keys; echo secret > .ssh/id_ed25519; echo host > .ssh/known_hosts
echo 'ls secret' > .bash_history; echo 'import os' > .python_history; echo w > .cache/uv/wheel; echo d > .keras/datasets/mnist.npz
mkdir -p .aws; echo creds > .aws/credentials
"""
    as_user(user, "bash", "-c", script)


def test_clean_up_leaves_the_environment_and_nothing_of_the_user(box_user, index):
    from remote.connection import connect

    ready_box(box_user, index)
    plant(box_user)
    w = box_user.home / "trainbox"
    current = os.readlink(w / "env")
    (w / "envs" / "old.20260101-000000.1").mkdir()  # a replaced environment
    said: list[str] = []
    conn = connect(box_user.target(), timeout=10)
    try:
        build = bake.prepare(conn, "trainbox", setup.SetupOptions.from_env(env(index)), home=True, say=said.append)
    finally:
        conn.close()
    assert build == "cpu"
    assert sorted(p.name for p in w.iterdir()) == sorted(
        n for n in ("bootstrap.sh", "env", "envs", "tools") if n != "tools" or (w / "tools").exists()
    )
    assert [f"envs/{p.name}" for p in (w / "envs").iterdir()] == [current]
    for gone in (".bash_history", ".python_history", ".cache", ".keras", ".aws"):
        assert not (box_user.home / gone).exists(), gone
    assert list((box_user.home / ".ssh").iterdir()) == [], "no keys, authorized or private, and no known hosts"
    assert any("removed trainbox/runs" in s for s in said) and any("no passwordless sudo" in s for s in said), said
    # The environment the image carries still works.
    assert box_python_says(box_user, "import keras; print(keras.__version__)") == setup.KERAS_VERSION
    assert "\n".join(p.name for p in box_user.home.iterdir()).count("trainbox") == 1


def test_clean_up_refuses_while_a_run_runs_and_removes_nothing(box_user, index):
    from common.errors import UsageError
    from remote.connection import connect

    ready_box(box_user, index)
    run = box_user.home / "trainbox" / "runs" / "live"
    as_user(box_user, "mkdir", "-p", str(run))
    # The user's own job (the box_user fixture ends the user's processes afterwards).
    as_user(box_user, "bash", "-c", f"setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {run}/pid")
    conn = connect(box_user.target(), timeout=10)
    try:
        with pytest.raises(UsageError, match="run live is running"):
            bake.prepare(conn, "trainbox", setup.SetupOptions.from_env(env(index)), home=True, say=lambda s: None)
    finally:
        conn.close()
    assert (run / "pid").exists() and (box_user.home / "trainbox" / "setup.log").exists()


def test_user_data_on_a_ready_disk_installs_nothing(box_user, index, tmp_path, monkeypatch):
    """What an instance booted from an image runs: the user-data's bootstrap, as the login user."""
    from cli.box_life import first_boot_bootstrap
    from provision.up import UpOptions, user_data

    ready_box(box_user, index)
    envs_before = sorted(p.name for p in (box_user.home / "trainbox" / "envs").iterdir())
    served = list(index.served)
    for k, v in env(index).items():
        monkeypatch.setenv(k, v)  # the laptop renders the user-data with the same settings
    text = user_data(UpOptions(name="img", bootstrap=first_boot_bootstrap()), box_user.name)
    part = text[text.index("home=$(getent passwd") :]  # the bootstrap's part (the guard needs systemd)
    # No sudo on this machine: one on PATH that does what `sudo -u U -H` does, with runuser.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sudo").write_text(
        '#!/bin/bash\n[ "$1" = -u ] && [ "$3" = -H ] || exit 99\nu=$2; shift 3\n'
        'exec runuser -u "$u" -- env HOME="$(getent passwd "$u" | cut -d: -f6)" "$@"\n'
    )
    (fake / "sudo").chmod(0o755)
    p = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", part],
        env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    wait_for(
        lambda: "ready, nothing to install" in log_of(box_user), "the boot-time bootstrap to find the env ready", 60
    )
    assert index.served == served, "nothing downloaded"
    assert sorted(p.name for p in (box_user.home / "trainbox" / "envs").iterdir()) == envs_before, "nothing built"


def test_sandbox_bake_down_up_is_ready_with_no_install_then_rm(moto_endpoint, index, tmp_path):
    from common import paths

    e = env(index)
    r = run_cli("provision", "up", "--sandbox", env=e)
    assert r.code == 0, r.err
    r = run_cli("remote", "setup", env=e)
    assert r.code == 0, r.err
    disk = paths.sandbox_dir() / "boxes" / "default" / "disk"
    (disk / "runs" / "r1").mkdir(parents=True)
    (disk / "runs" / "r1" / "log").write_text("epoch 1\n")
    (disk / "data" / "flowers").mkdir(parents=True)
    (disk / "data" / "flowers" / "a.jpg").write_text("jpeg")

    r = run_cli("provision", "image", "create", "--no-pull", env=e)
    assert r.code == 0, r.err
    image_id = re.search(r"image (ami-\w+) \(trainbox-default-[\d-]+\) is available", r.out).group(1)
    assert "stopping box 'default'" in r.err and "removed" in r.err and "kept:" in r.err
    frozen = sandbox_images.sandbox_image_dir(image_id) / "disk"
    assert sorted(p.name for p in frozen.iterdir()) <= ["bootstrap.sh", "env", "envs", "tools"]
    assert (frozen / "env" / "trainbox-ready").exists()

    r = run_cli("provision", "image", "ls", "--sandbox", env=e)
    assert r.code == 0 and image_id in r.out and "GB" in r.out, r.out + r.err
    r = run_cli("provision", "ls", "--sandbox", env=e)
    assert re.search(rf"default\s+image\s+{image_id}", r.out) and "snapshot" in r.out, r.out

    r = run_cli("provision", "down", "--yes", "--no-pull", env=e)
    assert r.code == 0, r.err
    assert f"kept the box's images {image_id}" in r.err

    served = list(index.served)
    r = run_cli("provision", "up", "--sandbox", env=e)
    assert r.code == 0, r.err
    assert f"AMI {image_id}" in r.err and "nothing to install" in r.err and "its environment is ready" in r.err, r.err
    assert not (disk / "runs").exists() and not (disk / "data").exists(), "none of the user's things came back"
    r = run_cli("remote", "setup", env=e)
    assert r.code == 0 and "ready, nothing to install" in r.err, r.err
    assert index.served == served
    r = run_cli(
        "provision",
        "ssh",
        "--",
        str(disk / "env" / "bin" / "python"),
        "-c",
        "'import keras; print(keras.__version__)'",
        env=e,
    )
    assert r.code == 0 and r.out.strip() == setup.KERAS_VERSION, r.out + r.err

    r = run_cli("provision", "image", "rm", image_id, "--yes", "--sandbox", env=e)
    assert r.code == 0, r.err
    assert not sandbox_images.sandbox_image_dir(image_id).exists()
    r = run_cli("provision", "image", "ls", "--sandbox", env=e)
    assert "no trainbox images" in r.out, r.out
    r = run_cli("provision", "down", "--yes", "--no-pull", env=e)
    assert r.code == 0, r.err
    r = run_cli("provision", "ls", "--sandbox", env=e)
    assert "image" not in r.out and "snapshot" not in r.out, r.out
