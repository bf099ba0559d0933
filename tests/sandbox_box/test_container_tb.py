"""`remote tb` on the container box (issue 27): TensorBoard checks its port
on "localhost" before it binds, and the box had no /etc/hosts (debootstrap
makes none; cloud-init's manage_etc_hosts: localhost only adds the box's own
name), so it died with socket.gaierror. The root file system now carries an
AMI's /etc/hosts.

The box's environment is the fake wheels of the guard boxes (served on
127.0.0.1) with TensorBoard's real wheels and its real dependencies among
them (pip download through this machine's pip configuration, as the main
container box's install uses it), and no TensorFlow module (TensorBoard runs
in its no-TensorFlow mode). Every connection is to 127.0.0.1.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from remote import setup
from sandbox import container, rootfs
from testkit import http_get, start_cli, wait_for

pytestmark = pytest.mark.slow

WHY_NOT = container.unavailable()
if WHY_NOT:
    pytest.skip(f"the container box cannot run here: {WHY_NOT}", allow_module_level=True)

URL = re.compile(r"TensorBoard on .*: http://127\.0\.0\.1:(\d+)/")


def tensorboard_wheels(d: Path) -> None:
    """The guard boxes' fake wheels, but TensorBoard's real ones (and its
    dependencies') instead of the fake tensorboard and pillow, and a
    TensorFlow with no module."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "box"))
    from box_fixtures import fake_wheels, make_wheel

    fake_wheels(d)
    for w in d.glob("*.whl"):
        if w.name.split("-")[0].lower() in ("tensorboard", "pillow", "tensorflow", "tensorflow_cpu"):
            w.unlink()
    make_wheel(d, "tensorflow-cpu", setup.TF_VERSION, {"trainbox_no_tensorflow.txt": ""})
    make_wheel(d, "tensorflow", setup.TF_VERSION, {"trainbox_no_tensorflow.txt": ""}, extras=("and-cuda",))
    tb = next(r for r in setup.MODEL_REQUIREMENTS if r.startswith("tensorboard"))
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            tb,
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--platform",
            "manylinux2014_x86_64",
            "--platform",
            "manylinux_2_17_x86_64",
            "--platform",
            "manylinux_2_28_x86_64",
            "-d",
            str(d),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert got.returncode == 0, f"pip download of {tb} (this machine's pip configuration): {got.stderr[-2000:]}"


@pytest.fixture(scope="module")
def tb_box(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "box"))
    from box_fixtures import serve_index
    from test_container_box import Sandbox

    root = tmp_path_factory.mktemp("tb-box")
    tensorboard_wheels(root / "wheels")
    index, server = serve_index(root / "wheels")
    sb = Sandbox(root, TRAINBOX_INDEX_URL=index.url, TRAINBOX_INSTALL_RETRIES="1", TRAINBOX_INSTALLER="pip")
    sb.up = sb.cli("provision", "up", "--sandbox", "--sandbox-box", "container", "--name", "tb")
    yield sb
    sb.down_all()
    server.shutdown()


def test_the_box_resolves_localhost_and_its_own_name(tb_box):
    assert tb_box.up.code == 0, tb_box.up.err
    assert (Path(rootfs.path()) / "etc/hosts").read_text() == rootfs.ETC_HOSTS
    out = tb_box.ssh(
        'cloud-init status --wait >/dev/null; getent hosts localhost; getent hosts "$(hostname)"; '
        'python3 -c \'import socket; socket.socket().connect_ex(("localhost", 9)); print("localhost ok")\'',
        name="tb",
    )
    assert re.search(r"^(127\.0\.0\.1|::1)\s+localhost", out, re.MULTILINE), out
    assert re.search(r"^127\.0\.1\.1\s+tb\b", out, re.MULTILINE), out
    assert out.splitlines()[-1] == "localhost ok"


def test_remote_tb_serves_tensorboard_from_the_container_box(tb_box, tmp_path):
    setup_ = tb_box.cli("remote", "setup", "--name", "tb")
    assert setup_.code == 0, setup_.err + setup_.out
    out = tmp_path / "tb.out"
    env = {**tb_box.env}
    proc = start_cli("remote", "tb", "--name", "tb", out=out, cwd=tb_box.work, env=env)
    try:

        def printed():
            m = URL.search(out.read_text())
            if m is None and proc.poll() is not None:
                raise AssertionError(f"remote tb exited {proc.returncode}: {Path(f'{out}.err').read_text()}")
            return m

        local = int(wait_for("remote tb to print its URL", printed, timeout=240).group(1))
        page = wait_for(
            "TensorBoard's page through the tunnel", lambda: http_get(f"http://127.0.0.1:{local}/"), timeout=60
        )
        assert b"<title>TensorBoard</title>" in page
        assert "gaierror" not in Path(f"{out}.err").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
