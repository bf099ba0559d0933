"""Issue 27, item 6: `remote runs` and `remote compare` read a `remote run`'s
metrics from what Keras wrote: CSVLogger's history.csv anywhere in its
results, or, when that is all there is, TensorBoard's event files (read
without TensorFlow: remote/tfevents.py). Epochs done, and the best value of
the monitored metric (val_loss unless --monitor says; accuracies: highest).

The runs are real: a tiny Keras fit through the session's sshd, with --python
this interpreter (which has Keras). The event files of the reader's own tests
are written by TensorFlow itself, in a child process (the laptop side never
imports it)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from remote import history, tfevents

FIT = """import json, os, sys
import numpy as np, keras
out = os.environ["TRAINBOX_OUT"]
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
callbacks = []
if "csv" in sys.argv:
    os.makedirs(out + "/logs", exist_ok=True)
    callbacks.append(keras.callbacks.CSVLogger(out + "/logs/history.csv"))
if "tb" in sys.argv:
    callbacks.append(keras.callbacks.TensorBoard(out + "/tb"))
fit = model.fit(x, y, validation_split=0.25, epochs=4, verbose=2, callbacks=callbacks)
json.dump(fit.history, open(out + "/truth.json", "w"))
"""


def keras_run(cli, on_box, tmp_path: Path, *how: str) -> tuple[str, dict]:
    """A `remote run` of FIT writing what ``how`` says; its run id and Keras's own history of it."""
    code = tmp_path / "proj"
    code.mkdir(exist_ok=True)
    (code / "fit.py").write_text(FIT)
    runs = tmp_path / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    r = cli(
        "remote",
        "run",
        "--code",
        str(code),
        *on_box,
        "--python",
        sys.executable,
        "--runs-dir",
        str(runs),
        "--pull-every",
        "600",
        "--",
        "python",
        "fit.py",
        *how,
        cwd=tmp_path,
    )
    assert r.code == 0, r.err + r.out
    (local,) = set(runs.iterdir()) - before
    return local.name, json.loads((local / "truth.json").read_text())


def runs_json(cli, tmp_path, *flags) -> dict[str, dict]:
    r = cli("remote", "runs", "--json", *flags, cwd=tmp_path)
    assert r.code == 0, r.err
    return {row["run"]: row for row in json.loads(r.out)}


def expect_best(values: list[float], pick=min) -> tuple[float, int]:
    v = pick(values)
    return v, values.index(v) + 1


@pytest.mark.slow
def test_runs_and_compare_read_keras_csvlogger_and_tensorboard_files(cli, on_box, tmp_path):
    csv_run, csv_truth = keras_run(cli, on_box, tmp_path, "csv")
    tb_run, tb_truth = keras_run(cli, on_box, tmp_path, "tb")
    assert not list((tmp_path / "runs" / tb_run).rglob("history.csv")), "the TensorBoard run wrote no CSV"

    got = runs_json(cli, tmp_path)
    for run, truth in ((csv_run, csv_truth), (tb_run, tb_truth)):
        row = got[run]
        assert row["epochs_done"] == 4 and row["monitor"] == "val_loss", row
        value, epoch = expect_best(truth["val_loss"])
        assert row["best"] == pytest.approx(value, rel=1e-5) and row["best_epoch"] == epoch, (row, truth)
        assert row["best_val_accuracy"] == pytest.approx(max(truth["val_accuracy"]), rel=1e-5)

    acc = runs_json(cli, tmp_path, "--monitor", "val_accuracy")[tb_run]
    value, epoch = expect_best(tb_truth["val_accuracy"], max)
    assert (acc["monitor"], acc["best"], acc["best_epoch"]) == ("val_accuracy", pytest.approx(value, rel=1e-5), epoch)

    table = cli("remote", "runs", cwd=tmp_path).out.splitlines()
    assert "best val_loss" in table[0]
    row = next(line for line in table if csv_run in line).split()
    value, epoch = expect_best(csv_truth["val_loss"])
    assert row[3:5] == ["4/-", f"{value:.4f}@{epoch}"], table

    r = cli("remote", "compare", csv_run, tb_run, "--out", str(tmp_path / "cmp.png"), cwd=tmp_path)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert "best val_loss" in lines[0]
    for run, truth in ((csv_run, csv_truth), (tb_run, tb_truth)):
        cells = next(line for line in lines if line.startswith(run)).split()
        value, epoch = expect_best(truth["val_loss"])
        assert cells[1:5] == ["4", f"{value:.4f}", "(ep", f"{epoch})"], lines
    assert (tmp_path / "cmp.png").stat().st_size > 1000


WRITE_EVENTS = """import sys
import tensorflow as tf
root = sys.argv[1]
for split, losses in (("train", [0.9, 0.6, 0.5]), ("validation", [0.8, 0.4, 0.7])):
    w = tf.summary.create_file_writer(f"{root}/tf2/{split}")
    with w.as_default():
        for step, v in enumerate(losses):
            tf.summary.scalar("epoch_loss", v, step=step)  # a TensorProto, in tensor_content
            tf.summary.scalar("batch_loss", 99.0, step=step * 100)
            tf.summary.histogram("epoch_kernel", [1.0, 2.0], step=step)
            tf.summary.text("epoch_note", "not a number", step=step)
    w.close()
# TF1's simple_value, and a TensorProto holding float_val, through TF's own writer.
w = tf.summary.create_file_writer(f"{root}/tf1/validation")
with w.as_default():
    for step, v in enumerate([0.5, 0.75]):
        s = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag="epoch_accuracy", simple_value=v)])
        tf.summary.experimental.write_raw_pb(s.SerializeToString(), step=step)
        for tag, dtype in (("epoch_auc", tf.float32), ("epoch_precision", tf.float64)):  # float_val, double_val
            t = tf.make_tensor_proto(v / 10, dtype=dtype)
            s = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag=tag, tensor=t)])
            tf.summary.experimental.write_raw_pb(s.SerializeToString(), step=step)
w.close()
"""


def written_by_tensorflow(root: Path) -> None:
    p = subprocess.run([sys.executable, "-c", WRITE_EVENTS, str(root)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]


def test_event_files_written_by_tensorflow_are_read_without_it(tmp_path):
    written_by_tensorflow(tmp_path)
    tf2 = tfevents.epoch_history(tmp_path / "tf2", 1000)
    assert tf2 == {
        "loss": pytest.approx([0.9, 0.6, 0.5]),
        "val_loss": pytest.approx([0.8, 0.4, 0.7]),
    }, "batch_*, histograms and text are left out"
    tf1 = tfevents.epoch_history(tmp_path / "tf1", 1000)
    assert tf1 == {
        "val_accuracy": pytest.approx([0.5, 0.75]),
        "val_auc": pytest.approx([0.05, 0.075]),
        "val_precision": pytest.approx([0.05, 0.075]),
    }
    hist, source = history.read(tmp_path)
    assert source.endswith("(TensorBoard event files)") and history.best(hist["val_loss"], "val_loss") == (
        pytest.approx(0.4),
        2,
    )
    assert history.best(hist["val_accuracy"], "val_accuracy") == (0.75, 2)


def test_a_cut_short_or_damaged_event_file_keeps_what_came_before(tmp_path):
    written_by_tensorflow(tmp_path)
    (f,) = (tmp_path / "tf2" / "validation").glob(tfevents.EVENT_GLOB)
    whole = f.read_bytes()
    full = tfevents.scalars(f)["epoch_loss"]
    f.write_bytes(whole[:-7])  # the last record cut short, as a pull mid-write finds it
    cut = tfevents.scalars(f)["epoch_loss"]
    assert 0 < len(cut) <= len(full) and all(cut[s] == full[s] for s in cut)
    damaged = bytearray(whole)
    damaged[len(whole) // 2] ^= 0xFF  # a flipped byte: its record's CRC fails, reading stops there
    f.write_bytes(bytes(damaged))
    assert set(tfevents.scalars(f).get("epoch_loss", {})) <= set(full)
    f.write_bytes(b"\x00garbage" * 10)
    assert tfevents.scalars(f) == {}


def test_history_csv_of_a_resumed_run_keeps_each_epochs_last_row(tmp_path):
    d = tmp_path / "deep" / "logs"
    d.mkdir(parents=True)
    (d / "history.csv").write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n"
        "0,0.5,0.9,0.4,1.0\n1,0.6,0.8,0.55,0.9\n"
        "1,0.62,0.79,0.6,0.85\n2,0.7,0.5,0.58,nan\n"  # resumed from epoch 1, appended
    )
    hist, source = history.read(tmp_path)
    assert source == str(d / "history.csv")
    assert hist["val_loss"][:3] == [1.0, 0.85] + [hist["val_loss"][2]] and math.isnan(hist["val_loss"][2])
    assert history.epochs_done(hist) == 3
    assert history.best(hist["val_loss"], "val_loss") == (0.85, 2), "NaN is never the best"
    assert history.best(hist["val_accuracy"], "val_accuracy") == (0.6, 2)


def test_a_table_of_runs_monitoring_different_metrics_names_each_cells_metric(tmp_path, capsys):
    from cli.remote_main import main as remote_main
    from remote import records
    from remote.target import Target

    target = Target("127.0.0.1", 2222, "u", None, "/srv/trainbox", box="gpu")
    built_in = tmp_path / "runs" / "20260101-000001-aaaa"
    built_in.mkdir(parents=True)
    (built_in / "history.json").write_text(json.dumps({"val_accuracy": [0.5, 0.8], "val_loss": [0.9, 0.7]}))
    records.new_record(built_in.name, target, built_in)
    own = tmp_path / "runs" / "20260101-000002-bbbb"
    (own / "logs").mkdir(parents=True)
    (own / "logs" / "history.csv").write_text("epoch,loss,val_loss\n0,1.0,0.6\n1,0.5,0.65\n")
    records.new_record(own.name, target, own, kind="run", command=["python", "fit.py"], code=str(tmp_path))

    assert remote_main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[4] == "best" and "val_" not in lines[0]
    assert "val_accuracy=0.8000@2" in lines[1].split() and "val_loss=0.6000@1" in lines[2].split()
    assert remote_main(["compare", built_in.name, own.name, "--out", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "val_accuracy=0.8000 (ep 2)" in out and "val_loss=0.6000 (ep 1)" in out
    assert (
        remote_main(["compare", built_in.name, own.name, "--monitor", "val_loss", "--out", str(tmp_path / "c.png")])
        == 0
    )
    out = capsys.readouterr().out
    assert "best val_loss" in out.splitlines()[0] and "0.7000 (ep 2)" in out and "0.6000 (ep 1)" in out
