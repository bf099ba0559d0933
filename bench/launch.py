"""Bench: launch-to-ready from the bare image against from a baked trainbox image (issue 17), in the sandbox.

"Ready" is what `remote train` needs before it can start the model: the box
answers SSH and trainbox's environment on it is ready (the bootstrap says so).
One run does both, in the sandbox (moto on 127.0.0.1, the process box):
  bare   `up --sandbox` on the DLAMI stand-in, then the bootstrap (`remote setup`,
         what the user-data runs at boot on AWS) builds the environment
  bake   `image create` (timed, not compared)
  baked  `down`, then `up --sandbox` boots the image, then the same `remote setup`
         (it must say "ready, nothing to install")
The packages come from a package index on 127.0.0.1 serving wheels made here
(TensorFlow and Keras are this machine's, through a .pth, and the real uv):
nothing is downloaded, so the bare path's install is the bootstrap's own
work without the network. On AWS the download of the CUDA wheels comes on
top (README: the paper estimate). Goal: baked <= boot + 2 s, where boot is
its `up`. Prints each step, the ratio bare/baked, and the load.
    .venv/bin/python bench/launch.py
"""
from __future__ import annotations

import os
import re
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
    p = subprocess.run([sys.executable, "-m", *argv], env=env, capture_output=True, text=True, timeout=900)
    took = time.monotonic() - t
    if p.returncode != 0:
        raise SystemExit(f"`{' '.join(argv)}` failed ({p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}")
    return took, p.stdout + p.stderr


def main() -> int:
    import logging

    from moto.server import ThreadedMotoServer

    from provision.procs import free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    home = Path(tempfile.mkdtemp(prefix="trainbox-bench-launch-"))
    wheels = home / "wheels"
    fake_wheels(wheels, laptop_site=True)
    uv_wheel(wheels)
    index, http = serve_index(wheels)
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRAINBOX_HOME": str(home / "tb"), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
           "TRAINBOX_INDEX_URL": index.url, "TRAINBOX_JUPYTER": "0", "TRAINBOX_INSTALL_RETRIES": "1"}
    try:
        import boto3

        # moto builds a region's backend on its first call (a second or two): not the bare path's cost.
        boto3.client("ec2", region_name="us-east-1", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="x",
                     aws_secret_access_key="x").describe_images(Owners=["amazon"])
        print(f"load {os.getloadavg()[0]:.2f}; index on 127.0.0.1 (nothing downloaded)", flush=True)
        up1, out = cli("provision", "up", "--sandbox", env=env)
        setup1, out = cli("remote", "setup", env=env)
        assert "installing" in out, out
        bare = up1 + setup1
        print(f"bare   up {up1:6.2f} s + environment {setup1:6.2f} s = {bare:6.2f} s", flush=True)

        bake, out = cli("provision", "image", "create", "--no-pull", env=env)
        image = re.search(r"image (ami-\w+)", out).group(1)
        print(f"bake   image create {bake:6.2f} s ({image})", flush=True)
        cli("provision", "down", "--yes", "--no-pull", env=env)

        served = len(index.served)
        up2, out = cli("provision", "up", "--sandbox", env=env)
        assert f"AMI {image}" in out, out
        setup2, out = cli("remote", "setup", env=env)
        assert "ready, nothing to install" in out and len(index.served) == served, out
        baked = up2 + setup2
        print(f"baked  up {up2:6.2f} s + environment {setup2:6.2f} s = {baked:6.2f} s", flush=True)
        print(f"ratio  bare/baked {bare / baked:.2f}x; baked - boot = {setup2:.2f} s (goal <= 2 s: "
              f"{'met' if setup2 <= 2 else 'NOT met'}); load {os.getloadavg()[0]:.2f}")
    finally:
        subprocess.run([sys.executable, "-m", "provision", "down", "--yes", "--no-pull", "--images", "--sandbox"],
                       env=env, capture_output=True, text=True, timeout=300)
        moto.stop()
        http.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
