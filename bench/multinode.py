"""Multi-node and backend benchmark (issue 15): ratios against baselines measured in the same run.

    python bench/multinode.py [--n 200] [--image-size 64] [--batch-size 32] [--epochs 3]

On one generated two-class set (nothing is downloaded), the scratch CNN
through the real ``python -m model train``, each run in its own processes:

- 1 process on Keras's JAX backend, against 2 processes (2 "nodes" on
  127.0.0.1, JAX's distributed runtime, gloo collectives) on the same total
  work (same images, same global batch). On one machine both processes share
  its cores, so this cannot show scaling: the ratio is the overhead of the
  cluster (collectives per step, two input pipelines, the runtime), no more.
- the same epoch on TensorFlow against JAX (1 process each): images/s.

Each figure is the mean time of the epochs after the first (the first holds
the compilation and the decode cache's fill). Speed is never asserted in
tests; this prints a table. Scaling needs a machine per node (or GPUs): not
measurable here.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EPOCH = re.compile(r"^epoch (\d+)/\d+ .*\(([\d.]+)s\)$", re.M)


def env(backend: str, **extra) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def steady_epoch_s(log: str) -> float:
    """The mean of the epochs after the first, from the model's one line per epoch."""
    times = [float(t) for e, t in EPOCH.findall(log) if int(e) > 1]
    if not times:
        raise SystemExit(f"no epoch lines after the first in:\n{log[-2000:]}")
    return sum(times) / len(times)


def train(args, data: Path, out: Path, backend: str, nodes: int = 1) -> float:
    """One run on ``nodes`` processes; node 0's steady epoch time in seconds."""
    argv = [
        sys.executable,
        "-m",
        "model",
        "train",
        "--data",
        str(data),
        "--epochs",
        str(args.epochs),
        "--image-size",
        str(args.image_size),
        "--batch-size",
        str(args.batch_size),
        "--augment",
        "light",
    ]
    coordinator = f"127.0.0.1:{free_port()}"
    procs = []
    for i in range(nodes):
        place = (
            {}
            if nodes == 1
            else {"TRAINBOX_NODES": str(nodes), "TRAINBOX_NODE": str(i), "TRAINBOX_COORDINATOR": coordinator}
        )
        procs.append(
            subprocess.Popen(
                [*argv, "--out", str(out / f"node{i}")],
                env=env(backend, **place),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
        )
    logs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise SystemExit(f"training failed ({backend}, {nodes} node(s)): {stderr.strip().splitlines()[-1:]}")
        logs.append(stdout)
    return steady_epoch_s(logs[0])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200, help="images per class, train + validation (default 200)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32, help="the global batch (default 32)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is not counted (default 3)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "model",
                "synth",
                "--out",
                str(data),
                "--n",
                str(args.n),
                "--image-size",
                str(args.image_size),
            ],
            check=True,
            capture_output=True,
            env=env("tensorflow"),
            cwd=REPO,
        )
        images = sum(1 for _ in (data / "train").rglob("*.jpg"))
        started = time.monotonic()
        jax1 = train(args, data, Path(tmp) / "jax1", "jax")
        jax2 = train(args, data, Path(tmp) / "jax2", "jax", nodes=2)
        tf1 = train(args, data, Path(tmp) / "tf1", "tensorflow")
    print(
        f"cpu cores: {os.cpu_count()}; {images} training images, {args.image_size} px, global batch {args.batch_size}, "
        f"CNN, steady epochs of {args.epochs - 1} (took {time.monotonic() - started:.0f}s)"
    )
    print(f"{'run':<38} {'epoch s':>8} {'images/s':>9} {'ratio':>7}")
    print(f"{'jax, 1 process (baseline)':<38} {jax1:8.2f} {images / jax1:9.0f} {1.0:7.2f}")
    print(
        f"{'jax, 2 processes, same total work':<38} {jax2:8.2f} {images / jax2:9.0f} {jax2 / jax1:7.2f}  (time ratio)"
    )
    print(f"{'tensorflow, 1 process':<38} {tf1:8.2f} {images / tf1:9.0f} {jax1 / tf1:7.2f}  (tf images/s over jax's)")
    print("2 processes on one machine share its cores: the time ratio is the cluster's overhead, not scaling.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
