"""train: learning, the files of a run, plain log lines, resume after a kill, exit codes."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from model.cli import main


def load(path):
    with open(path) as f:
        return json.load(f)


def test_cnn_learns_synth_in_two_epochs(cnn_run):
    metrics = load(os.path.join(cnn_run["out"], "metrics.json"))
    history = load(os.path.join(cnn_run["out"], "history.json"))
    assert history["val_accuracy"][-1] > 0.9
    assert metrics["val_accuracy"] > 0.9
    assert metrics["n_validation"] == 80
    assert sum(map(sum, metrics["confusion_matrix"])) == 80


def test_run_folder_holds_every_artifact(cnn_run):
    out = cnn_run["out"]
    for name in (
        "model.keras",
        "checkpoints/last.keras",
        "checkpoints/best.keras",
        "history.json",
        "history.csv",
        "metrics.json",
        "run.json",
    ):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    assert any(files for _, _, files in os.walk(os.path.join(out, "tensorboard")))
    assert not os.path.exists(os.path.join(out, "backup")), "backup state is removed once the run completes"
    history = load(os.path.join(out, "history.json"))
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history)
    assert all(len(v) == 2 for v in history.values())
    with open(os.path.join(out, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["val_accuracy"]) == pytest.approx(history["val_accuracy"][1])
    assert load(os.path.join(out, "run.json"))["status"] == "complete"


def test_one_plain_line_per_epoch_when_not_a_tty(cnn_run):
    stdout = cnn_run["proc"].stdout
    assert "\r" not in stdout and "\x08" not in stdout
    epoch_lines = [line for line in stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"]
    assert all("val_accuracy" in line for line in epoch_lines)


def test_corrupt_files_skipped_and_counted_in_a_run(cnn_run, synth_data):
    assert "skipped 2 unreadable" in cnn_run["proc"].stdout
    assert "skipped 2 unreadable" in cnn_run["proc"].stderr  # the warning
    run = load(os.path.join(cnn_run["out"], "run.json"))
    assert sorted(s["path"] for s in run["skipped"]) == sorted(synth_data["bad"])
    assert load(os.path.join(cnn_run["out"], "metrics.json"))["skipped_files"] == 2


def test_rerun_of_a_complete_run_does_not_train_again(cnn_run, model_cli):
    before = load(os.path.join(cnn_run["out"], "history.json"))
    proc = model_cli("train", "--data", cnn_run["data"], "--out", cnn_run["out"], "--epochs", 2, "--image-size", 64)
    assert proc.returncode == 0, proc.stderr
    assert "already holds a complete run" in proc.stdout
    assert "epoch 1/2" not in proc.stdout
    assert load(os.path.join(cnn_run["out"], "history.json")) == before


def test_resume_with_other_settings_is_refused(cnn_run, capsys):
    code = main(["train", "--data", cnn_run["data"], "--out", cnn_run["out"], "--epochs", "2", "--image-size", "32"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "image_size=64" in err[0] and "new --out" in err[0]


def wait_for_file(proc, path, deadline_s=240):
    """Poll for ``path`` while ``proc`` runs; the wait on the process is the poll interval."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if os.path.exists(path):
            return True
        try:
            proc.wait(timeout=0.05)
            return False  # exited before writing the file
        except subprocess.TimeoutExpired:
            pass
    raise AssertionError(f"{path} did not appear within {deadline_s}s")


@pytest.mark.slow
def test_killed_run_resumes_at_the_right_epoch(small_data, model_cli, tmp_path):
    epochs = 6
    out = str(tmp_path / "run")
    args = [
        "train",
        "--data",
        small_data,
        "--out",
        out,
        "--epochs",
        str(epochs),
        "--image-size",
        "32",
        "--batch-size",
        "8",
    ]
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "model", *args],
            cwd=model_cli.repo,
            env=model_cli.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            assert wait_for_file(proc, os.path.join(out, "checkpoints", "last.keras")), "training ended early"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = load(os.path.join(out, "history.json"))
    done_before = len(before["loss"])
    assert 1 <= done_before < epochs, "the kill must land mid-training"
    assert not os.path.exists(os.path.join(out, "model.keras"))

    proc = model_cli(*args)
    assert proc.returncode == 0, proc.stderr
    resumed = [int(line.split()[1].split("/")[0]) for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert resumed, proc.stdout
    assert 1 < resumed[0] <= done_before + 1, "resumes after the last backed-up epoch"
    assert resumed == list(range(resumed[0], epochs + 1))
    assert f"resuming from {os.path.join(out, 'backup')} at epoch {resumed[0]}/{epochs}" in proc.stdout

    after = load(os.path.join(out, "history.json"))
    assert all(len(v) == epochs for v in after.values())
    kept = resumed[0] - 1  # epochs from before the kill, kept as they were
    assert after["loss"][:kept] == before["loss"][:kept]
    with open(os.path.join(out, "history.csv")) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, epochs + 1))
    assert load(os.path.join(out, "metrics.json"))["epochs_run"] == epochs
    assert os.path.exists(os.path.join(out, "model.keras"))


def test_diverging_training_exits_1(small_data, model_cli, tmp_path):
    # Adam's first step moves every weight by about lr: at 1e38 a sum of a few
    # such weights is past float32's 3.4e38, so the loss is NaN in epoch 1 on
    # any machine. (At 1e12 the loss only grew to ~5e11, finite, on some
    # machines and thread orders: the test was flaky, not the check.)
    proc = model_cli(
        "train", "--data", small_data, "--out", tmp_path / "run", "--epochs", 2, "--image-size", 32, "--lr", 1e38
    )
    assert proc.returncode == 1
    err = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(err) == 1 and "NaN" in err[0] and "--lr" in err[0]
    assert "Traceback" not in proc.stderr


def test_divergence_is_nan_inf_or_an_exploded_loss_in_either_split():
    from model.train import diverged_at

    assert diverged_at({"loss": [0.7, 0.5], "val_loss": [0.6, 0.4]}) is None
    assert diverged_at({"loss": [0.7, float("nan")]}) == 2
    assert diverged_at({"loss": [0.7, 0.6], "val_loss": [9.9e11, 0.5]}) == 1  # what lr=1e12 gives on this machine
    assert diverged_at({"loss": [float("inf")]}) == 1


def test_a_resume_state_cut_mid_write_is_repaired(tmp_path):
    """A kill during Keras' in-place metadata write leaves an empty file."""
    from model.callbacks import repair_backup

    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "training_metadata.json").write_text("")
    (backup / "latest.weights.h5").write_bytes(b"new")
    (backup / "training_metadata.json.bkp").write_text('{"epoch": 2}')
    (backup / "latest.weights.h5.bkp").write_bytes(b"old")
    assert "epoch before" in repair_backup(str(backup))
    assert (backup / "training_metadata.json").read_text() == '{"epoch": 2}'
    assert (backup / "latest.weights.h5").read_bytes() == b"old"

    (backup / "training_metadata.json").write_text("{")
    (backup / "training_metadata.json.bkp").unlink()
    assert "starting over" in repair_backup(str(backup))
    assert not list(backup.iterdir())
    assert repair_backup(str(backup)) is None
