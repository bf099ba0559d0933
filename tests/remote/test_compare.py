"""remote compare: curves of several pulled runs in one PNG, and a table of their metrics (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from common.errors import UsageError
from remote import compare


def pulled(root: Path, run_id: str, history: dict, **config) -> Path:
    d = root / run_id
    d.mkdir(parents=True)
    (d / "history.json").write_text(json.dumps(history))
    (d / "run.json").write_text(json.dumps({"config": {"out": str(d), "epochs": len(history["loss"]), **config}}))
    return d


def colour_share(png: Path, rgb: tuple[int, int, int], tol: int = 30) -> float:
    img = Image.open(png).convert("RGB")
    data = img.tobytes()
    px = [data[i : i + 3] for i in range(0, len(data), 3)]
    return sum(1 for p in px if all(abs(a - b) <= tol for a, b in zip(p, rgb))) / len(px)


@pytest.fixture
def two_runs(tmp_path):
    a = pulled(
        tmp_path,
        "run-a",
        {
            "loss": [0.9, 0.6, 0.4],
            "accuracy": [0.5, 0.7, 0.8],
            "val_loss": [0.8, 0.7, 0.75],
            "val_accuracy": [0.55, 0.72, 0.70],
        },
        lr=0.001,
        net="cnn",
    )
    b = pulled(
        tmp_path,
        "run-b",
        {"loss": [1.2, 1.0], "accuracy": [0.4, 0.45], "val_loss": [1.1, 1.0], "val_accuracy": [0.42, 0.5]},
        lr=0.01,
        net="cnn",
    )
    return [compare.load("run-a", a, "val_accuracy"), compare.load("run-b", b, "val_accuracy")]


def test_the_png_has_both_runs_curves(two_runs, tmp_path):
    png = compare.plot(two_runs, tmp_path / "cmp" / "compare.png")
    assert colour_share(png, (31, 119, 180)) > 0.001  # matplotlib's C0: the first run
    assert colour_share(png, (255, 127, 14)) > 0.001  # C1: the second
    one = compare.plot(two_runs[:1], tmp_path / "one.png")
    assert colour_share(one, (255, 127, 14)) < 0.0001  # the colour belongs to the run, not the chart


def test_the_table_has_best_and_final_metrics_and_the_differing_arguments(two_runs):
    text = compare.table(two_runs)
    assert "best val_accuracy" in text.splitlines()[0]
    a, b = text.splitlines()[1:3]
    assert a.split()[:4] == ["run-a", "3", "0.7200", "(ep"] and "0.7000" in a
    assert b.startswith("run-b") and "0.5000 (ep 2)" in b
    assert "lr             run-a=0.001  run-b=0.01" in text
    assert "net " not in text.split("arguments that differ:")[1] and "epochs" in text.split("arguments that differ:")[1]


def test_a_run_without_history_names_the_pull(tmp_path):
    with pytest.raises(UsageError, match="remote pull run-x"):
        compare.load("run-x", tmp_path / "nothing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "history.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        compare.load("bad", bad)


def test_the_cli_prints_the_table_and_the_png_path(tmp_path, monkeypatch, capsys):
    from cli.remote_main import main
    from remote import records

    monkeypatch.chdir(tmp_path)
    for run_id, hist in (
        ("20261201-000000-aaaa", {"loss": [0.9, 0.5], "val_accuracy": [0.6, 0.8]}),
        ("20261201-000001-bbbb", {"loss": [1.0, 0.7], "val_accuracy": [0.5, 0.6]}),
    ):
        local = pulled(tmp_path / "runs", run_id, hist)
        records.save_record(
            records.RunRecord(run_id, "default", "127.0.0.1", 22, "u", None, "trainbox", str(local), 1.0)
        )
    assert main(["compare", "20261201-000000-aaaa", "20261201-000001-bbbb"]) == 0
    out = capsys.readouterr().out
    png = tmp_path / "runs" / "compare-20261201-000000-aaaa-20261201-000001-bbbb.png"
    assert f"curves: {png.relative_to(tmp_path)}" in out and png.stat().st_size > 1000
    assert "0.8000 (ep 2)" in out
    assert main(["compare", "20261201-000000-aaaa", "20261201-000009-cccc"]) == UsageError.exit_code
    assert "no run 20261201-000009-cccc is known here" in capsys.readouterr().err
