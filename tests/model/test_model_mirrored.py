"""--gpus all: MirroredStrategy, exercised on 2 logical CPU devices in a subprocess."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from model.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpu_devices(small_data, model_cli, tmp_path):
    out = str(tmp_path / "run")
    args = [
        "train",
        "--data",
        small_data,
        "--out",
        out,
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "16",
        "--gpus",
        "all",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        cwd=model_cli.repo,
        env=model_cli.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 replica(s)" in proc.stdout
    with open(os.path.join(out, "history.json")) as f:
        assert len(json.load(f)["loss"]) == 1
    assert os.path.exists(os.path.join(out, "model.keras"))
