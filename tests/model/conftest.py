"""Fixtures for the model package's tests: tiny generated data, one trained run.

Everything is made here from fixed seeds (no downloads). The expensive parts
(a data set, a 2-epoch CNN run through the real CLI) are session-scoped and
shared by the train, report and predict tests.
"""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


@pytest.fixture(scope="session")
def model_cli():
    """Run ``python -m model ARGS`` in a subprocess; returns CompletedProcess."""

    def run(*args, timeout=300):
        return subprocess.run(
            [sys.executable, "-m", "model", *map(str, args)],
            cwd=REPO,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    run.env = cli_env
    run.repo = REPO
    return run


def add_bad_files(folder: str) -> list[str]:
    """A garbage .jpg and a truncated real JPEG in ``folder``; returns their paths."""
    garbage = os.path.join(folder, "cat.9001.jpg")
    with open(garbage, "wb") as f:
        f.write(b"this is not a jpeg at all" * 10)
    real = sorted(p for p in os.listdir(folder) if p.endswith(".jpg") and p != "cat.9001.jpg")[0]
    truncated = os.path.join(folder, "cat.9002.jpg")
    with open(os.path.join(folder, real), "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    return [garbage, truncated]


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    """The default synth set (200 images per class, 64 px) plus 2 unreadable files in train/cats."""
    from model.synth import generate

    root = str(tmp_path_factory.mktemp("synth") / "data")
    generate(root, n=200, image_size=64, seed=0)
    bad = add_bad_files(os.path.join(root, "train", "cats"))
    return {"root": root, "bad": bad}


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """A clean, smaller set (40 per class, 32 px) for quick multi-run tests."""
    from model.synth import generate

    root = str(tmp_path_factory.mktemp("small") / "data")
    generate(root, n=40, image_size=32, seed=1)
    return root


@pytest.fixture(scope="session")
def cnn_run(synth_data, model_cli, tmp_path_factory):
    """``train --net cnn --epochs 2`` on synth_data through the real CLI."""
    out = str(tmp_path_factory.mktemp("runs") / "cnn")
    proc = model_cli(
        "train", "--data", synth_data["root"], "--out", out, "--epochs", 2, "--image-size", 64, "--seed", 0
    )
    assert proc.returncode == 0, proc.stderr
    return {"out": out, "proc": proc, "data": synth_data["root"]}


@pytest.fixture
def layout_copy(tmp_path, small_data):
    """A private copy of small_data that a test may break."""
    dst = str(tmp_path / "data")
    shutil.copytree(small_data, dst)
    return dst
