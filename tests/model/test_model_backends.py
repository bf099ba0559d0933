"""model/ runs unchanged on both of Keras's backends (the backend is fixed per
process: each case is one lean run in a subprocess with KERAS_BACKEND set;
the rest of the model suite runs on the process's own backend)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("backend,other", [("tensorflow", "jax"), ("jax", "tensorflow")])
def test_train_on_a_backend_and_predict_on_the_other(backend, other, small_data, model_cli, tmp_path):
    """One epoch on ``backend``; its model.keras predicts on ``other`` (a run
    trained on the box's backend loads on the laptop's)."""

    def cli(keras_backend, *args):
        return subprocess.run(
            [sys.executable, "-m", "model", *map(str, args)],
            cwd=model_cli.repo,
            env={**model_cli.env(), "KERAS_BACKEND": keras_backend},
            capture_output=True,
            text=True,
            timeout=600,
        )

    out = tmp_path / "run"
    trained = cli(
        backend,
        "train",
        "--data",
        small_data,
        "--out",
        out,
        "--epochs",
        1,
        "--image-size",
        32,
        "--batch-size",
        16,
        "--augment",
        "light",
    )
    assert trained.returncode == 0, trained.stderr
    assert f"keras on {backend}" in trained.stdout
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 1
    assert (out / "metrics.json").exists()
    sub = tmp_path / "sub.csv"
    predicted = cli(
        other, "predict", "--model", out / "model.keras", "--test", f"{small_data}/validation/cats", "--out", sub
    )
    assert predicted.returncode == 0, predicted.stderr
    rows = sub.read_text().splitlines()
    assert rows[0] == "id,label" and len(rows) == 1 + 8
