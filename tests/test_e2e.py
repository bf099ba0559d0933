"""The whole loop, as a user runs it: the real CLIs in subprocesses.

up --sandbox -> remote train -> results home -> down, with TRAINBOX_HOME in
a temp dir. The sandbox's AWS is the session's moto server (AWS_ENDPOINT_URL),
so the test can still ask it, after `down`, whether anything tagged is left.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from common.errors import UsageError
from testkit import one_line_error, processes_mentioning, tagged


@pytest.mark.slow
def test_up_train_pull_down(cli, moto_endpoint, tmp_path, trainbox_home):
    work = tmp_path / "work"
    work.mkdir()

    up = cli("provision", "up", "--sandbox", cwd=work)
    assert up.code == 0, up.err
    assert "is up" in up.out
    kinds = {r.kind for r in tagged(moto_endpoint)}
    assert {"instance", "vpc", "subnet", "internet-gateway", "route-table", "security-group", "key-pair"} <= kinds
    key = trainbox_home / "keys" / "trainbox-default.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in up.out + up.err

    train = cli("remote", "train", "--epochs", "1", "--image-size", "32", cwd=work)
    assert train.code == 0, train.err + train.out
    assert "synthetic" in train.err
    (run,) = list((work / "runs").iterdir())
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 1 and len(history["val_accuracy"]) == 1
    assert (run / "model.keras").stat().st_size > 10_000
    assert list(run.glob("*.png")), "the loss/accuracy plot came home"
    assert "epoch 1/1" in (run / "train.log").read_text()

    state = cli("provision", "state", "--json", cwd=work)
    assert state.code == 0, state.err
    assert json.loads(state.out)["state"] == "running"

    # The run's cost: its box time at the box's price, recorded when it started.
    (row,) = json.loads(cli("remote", "runs", "--json", cwd=work).out)
    price = json.loads(state.out)["price_per_hour"]
    assert (
        price
        and row["price_per_hour"] == price
        and (row["box"], row["state"], row["home"]) == ("default", "finished", True)
    )
    assert row["duration_s"] > 0 and row["cost"] == pytest.approx(row["duration_s"] * price / 3600, abs=1e-4)
    page = (run / "report.html").read_text()  # the box's page, written again at home with the cost
    assert f"<th>cost</th><td>${row['cost']:.2f}</td>" in page and "<th>duration</th>" in page

    down = cli("provision", "down", "--yes", cwd=work)
    assert down.code == 0, down.err
    assert tagged(moto_endpoint) == []
    assert not key.exists()
    assert processes_mentioning(str(trainbox_home)) == []


@pytest.mark.slow
@pytest.mark.parametrize("recover", [(), ("--spot", "--recover")], ids=["box", "recover"])
def test_sandbox_starts_and_stops_its_own_aws(cli, tmp_path, trainbox_home, recover):
    """`down` ends the sandbox's own moto once nothing is left in it, and only then: a --recover
    box's checkpoint store (its role, its prefix) goes after its machines, while moto still runs."""
    assert "AWS_ENDPOINT_URL" not in os.environ
    up = cli("provision", "up", "--sandbox", *recover, cwd=tmp_path)
    assert up.code == 0, up.err
    server = json.loads((trainbox_home / "sandbox" / "moto" / "server.json").read_text())
    assert tagged(server["endpoint"]), "the sandbox's own moto server holds the box"
    assert processes_mentioning(str(trainbox_home)), "the box's sshd runs"

    down = cli("provision", "down", "--yes", cwd=tmp_path)
    assert down.code == 0, down.err
    assert processes_mentioning(str(trainbox_home)) == []
    assert not os.path.exists(f"/proc/{server['pid']}/cmdline") or processes_mentioning(f"-p {server['port']}") == []


def test_train_without_a_box_names_up(cli, tmp_path):
    r = cli("remote", "train", "--epochs", "3", cwd=tmp_path)
    assert r.code == UsageError.exit_code
    assert "python -m provision up" in one_line_error(r)


@pytest.mark.parametrize("epochs", ["0", "abc", "-1"])
def test_bad_epochs_is_one_line_exit_2(cli, tmp_path, epochs):
    r = cli("remote", "train", "--epochs", epochs, cwd=tmp_path)
    assert r.code == UsageError.exit_code
    assert "--epochs" in one_line_error(r)


def test_commands_on_a_missing_box_exit_2(cli, moto_endpoint, tmp_path):
    r = cli("provision", "state", cwd=tmp_path)
    assert r.code == UsageError.exit_code
    assert "python -m provision up" in one_line_error(r)
