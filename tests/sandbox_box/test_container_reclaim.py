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
import sys
from pathlib import Path

import pytest

from box import layout as names
from common import procs
from common.aws import Cloud
from provision import boxstore, recover
from provision.inventory import tagged_resources
from sandbox import container
from testkit import processes_mentioning

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
    sb.up = sb.cli("provision", "up", "--sandbox", "--sandbox-box", "container", "--spot", "--recover", "--name", NAME)
    assert sb.up.code == 0, sb.up.err
    sb.first = json.loads((sb.home / "state" / f"{NAME}.json").read_text())["instance_id"]
    sb.first_nspawn = sb.nspawn_pid(NAME)
    sb.notice = sb.cli("provision", "sandbox-notice", "--name", NAME, "--action", "terminate", "--in", "2")
    yield sb
    sb.down_all()
    server.shutdown()


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
    # The laptop's state still names the old instance: the next command follows the group.
    assert json.loads((sb.home / "state" / f"{NAME}.json").read_text())["instance_id"] == sb.first
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
