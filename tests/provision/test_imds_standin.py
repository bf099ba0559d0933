"""The sandbox's IMDSv2 stand-in (sandbox/imds.py): started and recorded per container box on
127.0.0.1, answering box/agent.py as EC2's metadata service does, its notice flipped by
`sandbox-notice`, stopped only when it is the process that was recorded (issue 13)."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

import pytest

from box import agent
from common import procs
from common.errors import UsageError
from sandbox import boxes


@pytest.fixture
def standin(trainbox_home):
    d = boxes.box_dir("spotty")
    d.mkdir(parents=True)
    (d / "kind").write_text("container\n")
    endpoint = boxes.ensure_imds("spotty")
    yield endpoint
    boxes.stop_imds("spotty")


def test_it_answers_the_agent_404_until_a_notice_then_the_document(standin):
    assert standin.startswith("http://127.0.0.1:")
    imds = agent.Imds(standin)
    assert imds.spot_notice() is None
    doc = json.loads(boxes.set_notice("spotty", "stop", in_s=120))
    assert imds.spot_notice() == doc and doc["action"] == "stop" and doc["time"].endswith("Z")
    boxes.clear_notice("spotty")
    assert imds.spot_notice() is None


def test_it_wants_an_imdsv2_token(standin):
    boxes.set_notice("spotty")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(standin + agent.NOTICE_PATH, timeout=5)
    assert e.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(standin + "/latest/api/token", method="PUT"), timeout=5)
    assert e.value.code == 400  # no TTL header: refused, as EC2 does


def test_it_is_recorded_reused_and_stopped(standin):
    rec = json.loads((boxes.box_dir("spotty") / "imds" / "server.json").read_text())
    assert procs.alive(rec["pid"]) and rec["start_time"] == procs.start_time(rec["pid"])
    assert boxes.ensure_imds("spotty") == standin  # running: the same one
    boxes.stop_imds("spotty")
    assert not procs.alive(rec["pid"]) and boxes.imds_endpoint("spotty") is None


def test_a_record_whose_process_is_not_ours_is_never_signalled(trainbox_home):
    d = boxes.box_dir("other") / "imds"
    d.mkdir(parents=True)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        (d / "server.json").write_text(json.dumps({"pid": stranger.pid, "start_time": "0", "port": 1, "endpoint": "x"}))
        assert boxes.imds_endpoint("other") is None
        boxes.stop_imds("other")
        assert stranger.poll() is None  # same pid, another start time: not ours, left alone
    finally:
        stranger.kill()
        stranger.wait()


def test_a_notice_needs_a_running_container_box(trainbox_home):
    boxes.box_dir("proc").mkdir(parents=True)
    (boxes.box_dir("proc") / "kind").write_text("process\n")
    with pytest.raises(UsageError, match="no IMDS stand-in"):
        boxes.set_notice("proc")
