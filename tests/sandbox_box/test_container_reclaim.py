"""A --recover container box's spot instance reclaimed (issue 25, item 6): `sandbox-notice
--action terminate` gives the notice, terminates the instance through the group and boots
the group's replacement as AWS starts it, with no other laptop command: a new container on a
fresh disk whose cloud-init runs the launch template's user-data (the agent unit), with its
own IMDS stand-in answering its own instance id and the instance role's credentials from
moto; and `down` leaves nothing.

One module-scoped box, its environment the guard boxes' fake wheels on 127.0.0.1 (what is
tested is the instance, not the install). Its cloud is the session's moto server on
127.0.0.1 (AWS_ENDPOINT_URL), so what `down` leaves there can be asked after it.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from box import layout as names
from common import procs
from common.aws import Cloud
from provision import boxstore, recover
from provision.inventory import tagged_resources
from sandbox import container
from testkit import processes_mentioning, start_cli, wait_for

pytestmark = pytest.mark.slow

WHY_NOT = container.unavailable()
if WHY_NOT:
    if __import__("os").environ.get("TRAINBOX_REQUIRE_CONTAINER"):  # CI: a missing nspawn is a failure
        raise RuntimeError(f"TRAINBOX_REQUIRE_CONTAINER is set but the container box cannot run: {WHY_NOT}")
    pytest.skip(f"the container box cannot run here: {WHY_NOT}", allow_module_level=True)

NAME = "reclaim"

# Run on the box by its login user: what an SDK on the instance asks its IMDS (the agent's env names it).
ASK_IMDS = """
import json, urllib.request
env = dict(l.strip().split("=", 1) for l in open("/etc/trainbox/agent.env") if "=" in l and not l.startswith("#"))
base = env["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
put = urllib.request.Request(base + "/latest/api/token", method="PUT",
                             headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
token = urllib.request.urlopen(put, timeout=10).read().decode()
def get(path):
    req = urllib.request.Request(base + "/latest/meta-data/" + path, headers={"X-aws-ec2-metadata-token": token})
    return urllib.request.urlopen(req, timeout=30).read().decode()
role = get("iam/security-credentials/")
print(json.dumps({"instance": get("instance-id"), "zone": get("placement/availability-zone"), "role": role,
                  "creds": json.loads(get("iam/security-credentials/" + role)), "s3": env.get("AWS_ENDPOINT_URL_S3")}))
"""


@pytest.fixture(scope="module")
def reclaimed(tmp_path_factory, moto_server):
    """`up --spot --recover` on the container box, then its instance reclaimed."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "box"))
    from box_fixtures import fake_wheels, serve_index
    from test_container_box import Sandbox

    root = tmp_path_factory.mktemp("reclaim-box")
    fake_wheels(root / "wheels")
    index, server = serve_index(root / "wheels")
    sb = Sandbox(
        root,
        AWS_ENDPOINT_URL=moto_server,
        TRAINBOX_INDEX_URL=index.url,
        TRAINBOX_INSTALL_RETRIES="1",
        TRAINBOX_INSTALLER="pip",
    )
    sb.moto = moto_server
    sb.follower = None
    try:
        up = ("provision", "up", "--sandbox", "--sandbox-box", "container", "--spot", "--recover", "--name", NAME)
        sb.up = sb.cli(*up)
        assert sb.up.code == 0, sb.up.err
        sb.first = json.loads((sb.home / "state" / f"{NAME}.json").read_text())["instance_id"]
        sb.first_nspawn = sb.nspawn_pid(NAME)
        # Two runs going when the instance is reclaimed: one detached (the laptop gone), one followed.
        project = sb.work / "project"
        project.mkdir()
        (project / "train.py").write_text(TRAIN)
        run = (
            "remote",
            "run",
            "--name",
            NAME,
            "--code",
            str(project),
            "--connect-timeout",
            "5",
            "--pull-every",
            "3600",
        )
        command = ("--", "python", "train.py", str(EPOCHS), str(STEPS))
        detached = sb.cli(*run, "--detach", *command)
        assert detached.code == 0, detached.err
        sb.detached = re.search(r"\b(\d{8}-\d{6}-[0-9a-f]{4})\b", detached.out + detached.err).group(1)
        sb.follower_out = sb.work / "follow.out"
        sb.follower = start_cli(*run, *command, out=sb.follower_out, cwd=sb.work, env=sb.env)
        runs = sb.layer(NAME) / "home/ubuntu/trainbox/runs"
        sb.followed = wait_for(
            "the followed run to start",
            lambda: next((d.name for d in runs.glob("*") if d.is_dir() and d.name != sb.detached), None),
            timeout=180,
            every=0.2,
        )
        for rid in (sb.detached, sb.followed):
            wait_for(f"{rid} in its 3rd epoch", lambda rid=rid: "epoch 2/" in text(runs / rid / "log"), timeout=180)
        sb.notice = sb.cli("provision", "sandbox-notice", "--name", NAME, "--action", "terminate", "--in", "5")
        try:
            sb.follower_code = sb.follower.wait(timeout=600)
        except subprocess.TimeoutExpired:
            sb.follower_code = None  # the test says what the follower said
        yield sb
    finally:
        if sb.follower is not None and sb.follower.poll() is None:
            sb.follower.terminate()
            sb.follower.wait()
        sb.down_all()
        server.shutdown()


# The user's own training, which checkpoints at each epoch's end into $TRAINBOX_OUT (the last
# save a cut epoch is redone from) and answers the agent's save request (a spot notice).
EPOCHS, STEPS = 12, 20
TRAIN = """
import json, os, sys, time
out, total, steps = os.environ["TRAINBOX_OUT"], int(sys.argv[1]), int(sys.argv[2])
request = os.environ["TRAINBOX_SAVE_REQUEST"]
state_file = os.path.join(out, "state.json")
state = json.load(open(state_file)) if os.path.exists(state_file) else {"epoch": 0, "history": []}
if state["epoch"]:
    print(f"resuming at epoch {state['epoch'] + 1}/{total}", flush=True)
for epoch in range(state["epoch"] + 1, total + 1):
    for step in range(steps):
        time.sleep(0.1)  # one step's work
        if os.path.exists(request):  # the agent asks: the last save is this epoch's start
            with open(os.path.join(os.path.dirname(request), "saved"), "w") as f:
                json.dump({"at": time.time(), "epoch": state["epoch"], "batch": 0}, f)
            os.unlink(request)
    state = {"epoch": epoch, "history": state["history"] + [epoch]}
    with open(state_file + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(state_file + ".tmp", state_file)
    print(f"epoch {epoch}/{total}", flush=True)
"""


def text(f: Path) -> str:
    return f.read_text(errors="replace") if f.exists() else ""


def events(run: Path) -> list[str]:
    return [json.loads(line)["event"] for line in text(run / "events").splitlines()]


def test_both_runs_finish_on_the_replacement_with_every_epoch_once_and_the_follower_rides_through(reclaimed):
    """Done when (issue 25): the runs cut by the reclaim are restored from S3 by the new instance's
    agent and finish there, each epoch once, with no laptop command (the detached one); the
    followed `remote run` says what happened, follows the resumed log and brings the results home."""
    sb = reclaimed
    assert sb.notice.code == 0, sb.notice.err
    new = recover.group_instance_id(recover.describe_group(cloud(sb).client("autoscaling"), recover.group_name(NAME)))
    runs = sb.layer(NAME) / "home/ubuntu/trainbox/runs"  # the replacement's fresh disk
    wait_for(f"{sb.detached} to finish", lambda: text(runs / sb.detached / "exit_code").strip(), timeout=600)
    for rid in (sb.detached, sb.followed):
        run = runs / rid
        assert text(run / "exit_code").strip() == "0", text(run / "log")[-2000:]
        assert json.loads(text(run / "out" / "state.json"))["history"] == list(range(1, EPOCHS + 1))
        assert events(run)[-2:] == ["restored", "resumed"], events(run)
        restored = [json.loads(line) for line in text(run / "events").splitlines()][-2]
        assert (restored["from_instance"], restored["instance"]) == (sb.first, new)
        log = text(run / "log")
        assert "resuming at epoch " in log and log.count(f"epoch {EPOCHS}/{EPOCHS}") == 1
    err, out = text(Path(f"{sb.follower_out}.err")), text(sb.follower_out)
    assert sb.follower_code == 0, err[-3000:]
    assert re.search(
        rf"instance {sb.first} was terminated \(spot\); {new} in us-east-1\w is resuming run {sb.followed}", err
    ), err
    assert out.count(f"epoch {EPOCHS}/{EPOCHS}") == 1
    local = sb.work / "runs" / sb.followed
    assert json.loads((local / "state.json").read_text())["history"] == list(range(1, EPOCHS + 1))


def cloud(sb) -> Cloud:
    return Cloud("us-east-1", sb.moto)


def test_the_replacement_s_container_boots_and_its_cloud_init_runs_the_user_data(reclaimed):
    sb = reclaimed
    assert sb.notice.code == 0, sb.notice.err
    g = recover.describe_group(cloud(sb).client("autoscaling"), recover.group_name(NAME))
    new = recover.group_instance_id(g)
    assert new != sb.first and g["DesiredCapacity"] == 1
    lines = sb.notice.out.splitlines()
    assert lines[0].startswith(f"spot notice given: {sb.first}'s IMDS answers") and '"terminate"' in lines[0]
    assert lines[1].startswith(f"{sb.first} terminated (spot reclaim)")
    assert lines[2].startswith(f"{new} (") and f"launched by group {recover.group_name(NAME)}" in lines[2]
    assert lines[3] == f"{sb.first}'s box is gone: powered off, its disk and its IMDS stand-in removed"
    assert lines[4] == f"{new}'s container box booting: a fresh disk, its user-data run by cloud-init, its own IMDS"
    assert lines[5].startswith(f"{new}'s box booted in ")
    # The old instance's container is gone; a new one runs, made for the new instance, its seed that instance's.
    assert not procs.alive(sb.first_nspawn) and sb.nspawn_pid(NAME) not in (None, sb.first_nspawn)
    assert (sb.box_dir(NAME) / "instance").read_text().strip() == new
    assert f'"{new}"' in (sb.layer(NAME) / container.SEED / "meta-data").read_text()
    # The laptop follows the group (here the follower already moved its state to the new instance).
    st = sb.cli("provision", "state", "--json", "--name", NAME)
    assert st.code == 0 and json.loads(st.out)["instance_id"] == new, st.err
    out = sb.ssh(f"cloud-init status --wait; systemctl is-active {names.AGENT_UNIT}; cat /etc/hostname", name=NAME)
    assert "status: done" in out and out.splitlines()[-2] == "active", out


def test_its_imds_answers_its_own_instance_id_and_the_role_s_credentials(reclaimed):
    sb = reclaimed
    new = json.loads((sb.home / "state" / f"{NAME}.json").read_text())["instance_id"]
    script = base64.b64encode(ASK_IMDS.encode()).decode()
    got = json.loads(sb.ssh(f"echo {script} | base64 -d | python3", name=NAME).splitlines()[-1])
    assert got["instance"] == new != sb.first
    assert got["zone"].startswith("us-east-1") and got["role"] == boxstore.role_name(NAME)
    creds = got["creds"]
    assert creds["Code"] == "Success" and creds["Type"] == "AWS-HMAC" and creds["AccessKeyId"] != "testing"
    assert creds["Token"] and creds["Expiration"].endswith("Z")
    assert got["s3"] == sb.moto  # the box's S3 calls go to moto on 127.0.0.1


def test_down_leaves_no_container_mount_imds_or_moto_resource(reclaimed):
    sb = reclaimed
    box_dir = sb.box_dir(NAME)
    nspawn = sb.nspawn_pid(NAME)
    imds_pid = json.loads((box_dir / "imds" / "server.json").read_text())["pid"]
    down = sb.cli("provision", "down", "--yes", "--no-pull", "--name", NAME)
    assert down.code == 0, down.err
    assert not procs.alive(nspawn) and not procs.alive(imds_pid) and not box_dir.exists()
    assert [m for m in Path("/proc/mounts").read_text().splitlines() if str(sb.home) in m] == []
    assert processes_mentioning(str(sb.home)) == []
    c = cloud(sb)
    ec2, asg = c.client("ec2"), c.client("autoscaling")
    left = [r for r in tagged_resources(ec2, "us-east-1", NAME, asg) if r.state != "terminated"]
    assert left == []
    assert recover.describe_group(asg, recover.group_name(NAME)) is None
    roles = c.client("iam").list_roles(PathPrefix=boxstore.ROLE_PATH)["Roles"]
    assert boxstore.role_name(NAME) not in [r["RoleName"] for r in roles]
    bucket = boxstore.bucket_name("123456789012", "us-east-1")
    listed = c.client("s3").list_objects_v2(Bucket=bucket, Prefix=boxstore.prefix(NAME))
    assert listed.get("KeyCount", 0) == 0
