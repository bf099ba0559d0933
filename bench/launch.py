"""Bench: launch-to-ready from the bare image against from a baked trainbox image (issue 17), in the sandbox.

"Ready" is what `remote train` needs before it can start the model: the box
answers SSH (its host keys pinned) and trainbox's environment on it is ready
(`remote setup` returns: it waits for the boot-time bootstrap, or finds the
marker). One run does both, in the sandbox (moto on 127.0.0.1):
  bare   `up --sandbox` from the DLAMI stand-in, then `remote setup`, which
         waits for the environment the boot-time bootstrap (user-data) installs
  bake   `image create` (timed, not compared)
  baked  `down`, then `up --sandbox` boots the image, then the same `remote setup`
         (it must say "ready, nothing to install" and fetch nothing)
Goal: baked <= boot + 2 s, boot being its own `up` (to SSH answering).

--box container (the default where root, systemd-nspawn and debootstrap are):
the box that boots like an instance (sandbox/container.py): its image is its
layer frozen as a read-only lower layer. The bare path installs the real pins
from the package index through this machine's pip configuration: the real
download of TensorFlow, what an image saves. (Fake wheels from 127.0.0.1 would
be installed by the boot-time bootstrap before `up` even returns: the two
paths would tie, measuring nothing.) This MAY download from the package index.
--box process: the process box, offline (an index on 127.0.0.1; TensorFlow and
Keras are this machine's, through a .pth, with the real uv): the process box
has no boot-time bootstrap, so its bare path is `remote setup`'s install.
Prints each step, the ratio bare/baked, and the load.
    .venv/bin/python bench/launch.py [--box container|process]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "box"))

from box_fixtures import fake_wheels, serve_index, uv_wheel  # noqa: E402 (the tests' offline index)


def cli(*argv: str, env: dict) -> tuple[float, str]:
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", *argv], env=env, capture_output=True, text=True, timeout=1800)
    took = time.monotonic() - t
    if p.returncode != 0:
        raise SystemExit(f"`{' '.join(argv)}` failed ({p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}")
    return took, p.stdout + p.stderr


def main() -> int:
    import logging

    from moto.server import ThreadedMotoServer

    from common.procs import free_port
    from sandbox import container, motoplace

    motoplace.install()  # the placement groups `up` and `down` ask for, which moto lacks (as the tests' moto)

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--box", choices=("container", "process"), default="process" if container.unavailable() else "container"
    )
    args = ap.parse_args()
    if args.box == "container" and container.unavailable():
        raise SystemExit(f"the container box cannot run here: {container.unavailable()} (--box process)")
    offline = args.box == "process"

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    home = Path(tempfile.mkdtemp(prefix="trainbox-bench-launch-"))
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE",)}
    env.update(
        PYTHONPATH=str(REPO),
        TRAINBOX_HOME=str(home / "tb"),
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="x",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        TRAINBOX_JUPYTER="0",
        TRAINBOX_SANDBOX_BOX=args.box,
    )
    index = http = None
    if offline:
        wheels = home / "wheels"
        fake_wheels(wheels, laptop_site=True)  # the process box is this machine: its real TensorFlow, through a .pth
        uv_wheel(wheels)
        index, http = serve_index(wheels)
        env.update(TRAINBOX_INDEX_URL=index.url, TRAINBOX_INSTALL_RETRIES="1")
    try:
        import boto3

        # moto builds a region's backend on its first call (a second or two): not the bare path's cost.
        boto3.client(
            "ec2",
            region_name="us-east-1",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="x",
            aws_secret_access_key="x",
        ).describe_images(Owners=["amazon"])
        if args.box == "container":
            from sandbox import rootfs

            rootfs.ensure(lambda s: print(s, flush=True))  # once per machine, not the bare path's cost
        source = "an index on 127.0.0.1 (nothing downloaded)" if offline else "the package index (a real download)"
        print(f"{args.box} box; environment from {source}; load {os.getloadavg()[0]:.2f}", flush=True)

        up1, out = cli("provision", "up", "--sandbox", env=env)
        setup1, out = cli("remote", "setup", env=env)
        assert "ready" in out, out
        bare = up1 + setup1
        print(f"bare   up {up1:6.2f} s + environment {setup1:7.2f} s = {bare:7.2f} s", flush=True)

        bake, out = cli("provision", "image", "create", "--no-pull", env=env)
        image = re.search(r"image (ami-\w+)", out).group(1)
        print(f"bake   image create {bake:6.2f} s ({image})", flush=True)
        cli("provision", "down", "--yes", "--no-pull", env=env)

        served = len(index.served) if index else None
        up2, out = cli("provision", "up", "--sandbox", env=env)
        assert f"AMI {image}" in out, out
        if args.box == "container":
            assert f"image {image}'s layer (read-only)" in out, out
        setup2, out = cli("remote", "setup", env=env)
        assert "ready, nothing to install" in out, out
        assert index is None or len(index.served) == served, "the baked box downloaded wheels"
        baked = up2 + setup2
        print(f"baked  up {up2:6.2f} s + environment {setup2:7.2f} s = {baked:7.2f} s", flush=True)
        print(
            f"ratio  bare/baked {bare / baked:.2f}x; baked - boot = {setup2:.2f} s (goal <= 2 s: "
            f"{'met' if setup2 <= 2 else 'NOT met'}); load {os.getloadavg()[0]:.2f}"
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "provision", "down", "--yes", "--no-pull", "--images", "--sandbox"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        moto.stop()
        if http:
            http.shutdown()
        shutil.rmtree(home, ignore_errors=True)  # the boxes are down; their layers and images went with them
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
