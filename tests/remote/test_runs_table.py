"""`remote runs`: the table and its --json, built from the records and the
pulled files alone (no box is asked). The real trainings' rows are checked
in test_remote_cli.py and test_e2e.py; here each state and the cost sum."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cli.remote_main import main as remote_main
from common.errors import UsageError
from remote import records
from remote.target import Target
from testkit import one_line_error, run_cli

TARGET = Target("127.0.0.1", 2222, "ubuntu", None, "/srv/trainbox", box="gpu")


def pulled_run(
    tmp_path: Path,
    run_id: str,
    *,
    exit_code: int | None,
    seconds: float,
    history: dict,
    epochs: int,
    resumed: int = 0,
    pulled: bool = True,
    **fields,
) -> records.RunRecord:
    """A run's record and the folder a pull brings home, its job `seconds` long."""
    local = tmp_path / "runs" / run_id
    local.mkdir(parents=True)
    rec = records.new_record(
        run_id, TARGET, local, command=["bash", "-c", "...", "model-train", "--epochs", str(epochs)], **fields
    )
    start = time.time() - 1000
    (local / "run.sh").write_text("#!/bin/bash\n")
    os.utime(local / "run.sh", (start, start))
    (local / "history.json").write_text(json.dumps(history))
    (local / "run.json").write_text(json.dumps({"config": {"net": "vgg16", "epochs": epochs}, "status": "complete"}))
    (local / "resumed").write_text(f"{resumed}\n")
    (local / "train.log").write_text("epoch 1\n")
    os.utime(local / "train.log", (start + seconds, start + seconds))
    if exit_code is not None:
        (local / "exit_code").write_text(f"{exit_code}\n")
        os.utime(local / "exit_code", (start + seconds, start + seconds))
    rec.pulled, rec.exit_code = pulled, exit_code
    records.save_record(rec)
    return rec


def runs_json(capsys, *flags: str) -> dict[str, dict]:
    assert remote_main(["runs", "--json", *flags]) == 0
    return {r["run"]: r for r in json.loads(capsys.readouterr().out)}


def test_runs_json_has_every_field_each_state_and_the_cost(tmp_path, capsys):
    hist = {"loss": [0.9, 0.5, 0.4], "val_accuracy": [0.5, 0.875, 0.75], "val_loss": [0.8, 0.6, 0.7]}
    pulled_run(
        tmp_path,
        "20260101-000001-aaaa",
        exit_code=0,
        seconds=720,
        history=hist,
        epochs=3,
        resumed=1,
        price_per_hour=3.0,
        nodes=[records.node_of(TARGET), records.node_of(TARGET)],
    )
    pulled_run(tmp_path, "20260101-000002-bbbb", exit_code=1, seconds=60, history={"loss": [1.0]}, epochs=5)
    stopped = pulled_run(
        tmp_path, "20260101-000003-cccc", exit_code=None, seconds=90, history=hist, epochs=8, pulled=False
    )
    stopped.last_seen = "stopped"
    records.save_record(stopped)
    pulled_run(tmp_path, "20260101-000004-dddd", exit_code=None, seconds=30, history={}, epochs=4, pulled=False)
    # Killed, then pulled: no exit code, results home.
    pulled_run(tmp_path, "20260101-000005-eeee", exit_code=None, seconds=45, history={}, epochs=4)

    got = runs_json(capsys)
    done = got["20260101-000001-aaaa"]
    assert set(done) == {
        "run",
        "box",
        "net",
        "backend",
        "epochs_done",
        "epochs_asked",
        "monitor",
        "best",
        "best_val_accuracy",
        "best_epoch",
        "duration_s",
        "price_per_hour",
        "nodes",
        "cost",
        "state",
        "exit_code",
        "resumed",
        "interrupted",
        "home",
        "local_dir",
    }
    assert (done["box"], done["net"], done["backend"]) == ("gpu", "vgg16", "tensorflow")
    assert (done["epochs_done"], done["epochs_asked"]) == (3, 3)
    assert (done["best_val_accuracy"], done["best_epoch"]) == (0.875, 2)
    assert (done["monitor"], done["best"]) == ("val_accuracy", 0.875), "the built-in model's: val_accuracy"
    assert done["duration_s"] == 720.0
    assert done["cost"] == 3.0 * 720 / 3600 * 2  # price/h x box time x nodes
    assert (done["state"], done["resumed"], done["home"]) == ("finished", 1, True)

    failed = got["20260101-000002-bbbb"]
    assert (failed["state"], failed["exit_code"], failed["cost"]) == ("failed", 1, None)  # no price known: --host
    assert failed["best_val_accuracy"] is None and failed["epochs_done"] == 1
    assert got["20260101-000003-cccc"]["state"] == "stopped"
    running = got["20260101-000004-dddd"]
    assert running["state"] == "running" and not running["home"]
    assert running["duration_s"] >= 1000, "a running run's duration runs to now"
    assert got["20260101-000005-eeee"]["state"] == "interrupted"

    # --price is the price of every run's box.
    priced = runs_json(capsys, "--price", "1.8")
    assert priced["20260101-000002-bbbb"]["cost"] == 1.8 * 60 / 3600
    assert priced["20260101-000001-aaaa"]["cost"] == 1.8 * 720 / 3600 * 2

    assert remote_main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["run", "box", "net", "epochs", "best", "val_accuracy"]
    row = next(l for l in lines if "20260101-000001-aaaa" in l).split()
    assert row[1:6] == ["gpu", "vgg16/tensorflow", "3/3", "0.8750@2", "12m00s"]
    assert row[6] == "$1.20" and " ".join(row[7:-1]) == "finished, resumed 1x" and row[-1] == "yes"


def test_a_corrupt_price_in_a_record_is_one_line_naming_it(tmp_path):
    rec = pulled_run(tmp_path, "20260101-000001-aaaa", exit_code=0, seconds=10, history={}, epochs=1)
    f = Path(os.environ["TRAINBOX_HOME"]) / "runs" / f"{rec.run_id}.json"
    f.write_text(f.read_text().replace('"price_per_hour": null', '"price_per_hour": "cheap"'))
    r = run_cli("remote", "status", rec.run_id)
    assert r.code == UsageError.exit_code
    assert "corrupt" in one_line_error(r) and "price_per_hour" in r.err


def test_report_writes_the_pulled_runs_page_again_with_its_duration_and_cost(tmp_path, capsys):
    from PIL import Image

    from model import report_page, run_files

    rec = pulled_run(
        tmp_path,
        "20260101-000001-aaaa",
        exit_code=0,
        seconds=720,
        history={"loss": [0.5], "val_accuracy": [0.75]},
        epochs=1,
    )
    local = Path(rec.local_dir)
    Image.new("RGB", (40, 30), "red").save(local / run_files.CURVES)
    (local / run_files.REPORT_PAGE).write_text("stale")
    assert remote_main(["report", rec.run_id, "--price", "3.6"]) == 0
    assert capsys.readouterr().out.strip() == str(local / run_files.REPORT_PAGE)
    page = (local / run_files.REPORT_PAGE).read_text()
    assert page == report_page.render(str(local), 720.0, 0.72, title=f"run {rec.run_id}")
    assert "<th>duration</th><td>0h12m00s</td>" in page and "<th>cost</th><td>$0.72</td>" in page
    assert "src='data:image/png;base64," in page


def test_report_of_a_run_not_home_says_pull(tmp_path):
    rec = records.new_record("20260101-000009-ffff", TARGET, tmp_path / "runs" / "20260101-000009-ffff")
    r = run_cli("remote", "report", rec.run_id)
    assert r.code == UsageError.exit_code
    assert f"remote pull {rec.run_id}" in one_line_error(r)
