"""Spot interruptions on the container box, with real systemd (issue 13).

One box, booted once, walked through two interruptions by the tests in order:

1. a followed `remote train`; the box's IMDS stand-in (127.0.0.1) is flipped
   to a spot notice mid-run, the agent asks the run to save, then the box's
   power is cut (its processes killed, no shutdown) and `provision start`
   boots it again: the agent resumes the run with no laptop command, the
   follower rides through it, every epoch is in the history exactly once;
2. three runs, one stopped by the user, then `provision stop` mid-run (a clean
   poweroff: the runs save on SIGTERM) and `provision start`: the two that
   were going resume and finish, the stopped one is left alone.

The box installs trainbox's environment from the package index through this
machine's pip config (as the main container box test does); the runs train
the course CNN at 32 px on a few hundred generated images.

NETWORK RULE: every connection is to 127.0.0.1 (the IMDS stand-in included);
the only other traffic is the box's install through the machine's pip config.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from provision import container
from testkit import start_cli, synth_image_set, wait_for

pytestmark = pytest.mark.slow

WHY_NOT = container.unavailable()
if WHY_NOT:
    if os.environ.get("TRAINBOX_REQUIRE_CONTAINER"):  # CI: a missing nspawn is a failure, not a skip
        raise RuntimeError(f"TRAINBOX_REQUIRE_CONTAINER is set but the container box cannot run: {WHY_NOT}")
    pytest.skip(f"the container box cannot run here: {WHY_NOT}", allow_module_level=True)

from test_container_box import Sandbox  # noqa: E402 (after the skip: it needs the container box too)

TRAIN = ("--image-size", "32", "--batch-size", "4", "--connect-timeout", "5", "--pull-every", "3600")


@pytest.fixture(scope="module")
def spot(tmp_path_factory):
    sb = Sandbox(tmp_path_factory.mktemp("spot-box"))
    sb.data = synth_image_set(sb.work / "data", n=120, size=32)
    up = sb.cli("provision", "up", "--sandbox", "--sandbox-box", "container")
    assert up.code == 0, up.err
    yield sb
    sb.down_all()


def runs_on_box(sb) -> Path:
    return sb.layer() / "home/ubuntu/trainbox/runs"


def the_run(sb, known: set[str]) -> Path:
    """The run folder on the box's disk that is not in known."""
    def new():
        found = [d for d in runs_on_box(sb).glob("*") if d.is_dir() and d.name not in known] if runs_on_box(sb).exists() else []
        return found[0] if found else None

    return wait_for("the run to appear on the box", new, timeout=180, every=0.2)


def text(f: Path) -> str:
    return f.read_text(errors="replace") if f.exists() else ""


def events(run: Path) -> list[str]:
    return [json.loads(l)["event"] for l in text(run / "events").splitlines()]


def history_epochs(csv: Path) -> list[int]:
    return [int(line.split(",")[0]) for line in csv.read_text().splitlines()[1:]]


def epoch_lines(log: str, total: int) -> list[int]:
    return [int(m) for m in re.findall(rf"^epoch (\d+)/{total}\b", log, re.M)]


def test_a_spot_notice_then_a_power_cut_resumes_at_boot_and_the_follower_rides_through(spot):
    follower_out = spot.work / "follow.out"
    follower = start_cli("remote", "train", "--epochs", "40", "--data", str(spot.data), *TRAIN,
                         out=follower_out, cwd=spot.work, env=spot.env)
    try:
        run = the_run(spot, set())
        wait_for("training to be under way", lambda: "epoch 2/40" in text(run / "log"), timeout=240, every=0.2)
        flip = spot.cli("provision", "sandbox-notice")
        assert flip.code == 0 and '"action": "stop"' in flip.out, flip.err
        # The agent sees it at its next poll (every 5 s) and asks; the run saves at its next batch end.
        saved = json.loads(wait_for("the run to save on request", lambda: text(run / "saved"), timeout=30, every=0.05))
        assert container.power_cut(spot.box_dir())  # no shutdown: nothing more is saved
        assert not (run / "exit_code").exists() and events(run) == ["spot-notice"]
        wait_for("the follower to say it waits", lambda: "box interrupted; waiting for it to come back; Ctrl-C detaches"
                 in text(Path(f"{follower_out}.err")), timeout=90, every=0.2)
        start = spot.cli("provision", "start")
        assert start.code == 0, start.err
        code = follower.wait(timeout=300)
    finally:
        if follower.poll() is None:
            follower.terminate()
            follower.wait()
    err, out = text(Path(f"{follower_out}.err")), text(follower_out)
    assert code == 0, err[-3000:]
    assert "the box is back: following the run" in err
    # Resumed by the box's agent at boot (the laptop only followed), from the state saved on request.
    assert events(run) == ["spot-notice", "resumed"]
    assert text(run / "exit_code").strip() == "0"
    resumed_at = int(re.search(r"resuming from \S+ at epoch (\d+)/40", text(run / "log")).group(1))
    assert resumed_at in (saved["epoch"] + 1, saved["epoch"] + 2), (saved, resumed_at)  # the cut epoch, or the next
    # Every epoch once: in the history brought home, and in the log the follower streamed.
    local = spot.work / "runs" / run.name
    assert history_epochs(local / "history.csv") == list(range(1, 41))
    assert len(json.loads((local / "history.json").read_text())["loss"]) == 40
    assert epoch_lines(out, 40) == list(range(1, 41))
    status = spot.cli("remote", "status", run.name)
    assert status.code == 0, status.err
    assert "spot interruption notice: asked the run to save (AWS: stop at" in status.out
    assert "resumed by the box at boot" in status.out
    runs = spot.cli("remote", "runs")
    assert re.search(rf"^{run.name} .* 1, resumed \d\d:\d\d:\d\d ", runs.out, re.M), runs.out


def test_a_stopped_box_resumes_its_going_runs_at_start_but_not_one_the_user_stopped(spot):
    known = {d.name for d in runs_on_box(spot).glob("*")}
    runs = []
    for _ in range(3):
        r = spot.cli("remote", "train", "--detach", "--epochs", "20", "--data", str(spot.data), *TRAIN)
        assert r.code == 0, r.err
        runs.append(the_run(spot, known))
        known.add(runs[-1].name)
    going, user_stopped = runs[:2], runs[2]
    for run in runs:
        wait_for(f"{run.name} to train", lambda run=run: "epoch 1/20" in text(run / "log"), timeout=240, every=0.2)
    stop = spot.cli("remote", "stop", user_stopped.name)
    assert stop.code == 0 and "stopped" in stop.out, stop.err
    log_before = text(user_stopped / "log")
    poweroff = spot.cli("provision", "stop")  # mid-run: the user stopped the box, not the runs
    assert poweroff.code == 0, poweroff.err
    for run in going:
        assert events(run) == ["stopping"] and not (run / "exit_code").exists()
        assert "(SIGTERM: stopping)" in text(run / "log")  # saved at the next batch end, then exited
    assert events(user_stopped) == []
    start = spot.cli("provision", "start")
    assert start.code == 0, start.err
    for run in going:
        wait_for(f"{run.name} to finish after its resume", lambda run=run: text(run / "exit_code").strip(), timeout=300, every=0.5)
        assert text(run / "exit_code").strip() == "0"
        assert events(run) == ["stopping", "resumed"]
        assert history_epochs(run / "out" / "history.csv") == list(range(1, 21))
        assert epoch_lines(text(run / "log"), 20) == list(range(1, 21))
    # The agent has long been through its resumes: the stopped run was left as it was.
    assert events(user_stopped) == [] and not (user_stopped / "exit_code").exists()
    assert text(user_stopped / "log") == log_before
