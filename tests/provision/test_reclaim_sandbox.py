"""The sandbox plays a --recover box's spot reclaim (issue 25, item 6), on the process box:
its IMDS stand-in serves the instance role's credentials from moto at EC2's path, and
`sandbox-notice --action terminate` gives the notice, terminates the instance through the
Auto Scaling API and boots the group's replacement, with no other laptop command. The
container box's side (cloud-init, the agent unit) is tests/sandbox_box/test_container_reclaim.py."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import boto3
from pvkit import SSH, group_box, run_ssh  # noqa: F401

from cli.provision_main import main
from common import procs, state
from common.aws import Cloud
from common.errors import UsageError
from provision import boxstore, lifecycle, recover
from provision.up import UpOptions, up
from sandbox import boxes, imds
from testkit import refused

CREDS = "/latest/meta-data/iam/security-credentials/"


def get(endpoint: str, path: str) -> tuple[int, str]:
    """An IMDSv2 GET, token first, as an instance's SDK does it."""
    put = urllib.request.Request(
        endpoint + "/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    )
    token = urllib.request.urlopen(put, timeout=10).read().decode()
    req = urllib.request.Request(endpoint + path, headers={"X-aws-ec2-metadata-token": token})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def group_now(cloud, box) -> dict:
    return recover.describe_group(cloud.client("autoscaling"), recover.group_name(box.name))


def test_the_imds_serves_the_instance_role_s_credentials_that_reach_the_box_s_prefix(group_box, moto_endpoint):
    cloud, box = group_box
    endpoint = boxes.ensure_imds(box.name)
    assert get(endpoint, "/latest/meta-data/instance-id") == (200, box.instance_id)
    zone = cloud.client("ec2").describe_instances(InstanceIds=[box.instance_id])["Reservations"][0]["Instances"][0]
    assert get(endpoint, "/latest/meta-data/placement/availability-zone") == (
        200,
        zone["Placement"]["AvailabilityZone"],
    )
    assert get(endpoint, "/latest/meta-data/placement/region") == (200, boxes.REGION)
    role = boxstore.role_name(box.name)
    assert get(endpoint, CREDS) == (200, role)
    assert get(endpoint, CREDS + "some-other-role")[0] == 404
    code, body = get(endpoint, CREDS + role)
    doc = json.loads(body)
    assert code == 200 and doc["Code"] == "Success" and doc["Type"] == "AWS-HMAC"
    assert doc["Expiration"] > doc["LastUpdated"] and doc["Expiration"].endswith("Z")
    assert doc["AccessKeyId"] != "testing" and doc["Token"]
    # With the role's credentials, boto3 writes under the box's prefix. moto does not enforce IAM
    # (any key reaches any bucket): what this shows is the path, not the policy's limit.
    store = state.load(box.name).extra["store"]
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name=boxes.REGION,
        aws_access_key_id=doc["AccessKeyId"],
        aws_secret_access_key=doc["SecretAccessKey"],
        aws_session_token=doc["Token"],
    )
    key = store["prefix"] + "runs/r1/checkpoint"
    s3.put_object(Bucket=store["bucket"], Key=key, Body=b"epoch 3")
    got = cloud.client("s3").get_object(Bucket=store["bucket"], Key=key)["Body"].read()
    assert got == b"epoch 3"


def test_the_credentials_are_fetched_again_before_they_expire(group_box, moto_endpoint):
    cloud, box = group_box
    role = boxstore.role_name(box.name)
    fresh = imds.Moto(moto_endpoint, boxes.REGION, box.instance_id)
    first = fresh.credentials(role)
    assert fresh.credentials(role) == first  # an hour left: the same ones
    # moto's are for an hour: with "fetch again when under two hours are left", each ask fetches.
    near = imds.Moto(moto_endpoint, boxes.REGION, box.instance_id, refresh_before_s=7200)
    one, two = near.credentials(role)["AccessKeyId"], near.credentials(role)["AccessKeyId"]
    assert one != two


def test_a_box_without_a_role_answers_404_for_the_iam_path(moto_endpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cloud = Cloud(boxes.REGION, moto_endpoint, sandbox=True)
    box = up(cloud, UpOptions(name="plain"), lambda s: None)
    try:
        endpoint = boxes.ensure_imds(box.name)
        assert get(endpoint, "/latest/meta-data/instance-id") == (200, box.instance_id)
        assert get(endpoint, CREDS)[0] == 404
        assert get(endpoint, CREDS + boxstore.role_name(box.name))[0] == 404
    finally:
        lifecycle.destroy(cloud, box.name, lambda s: None)


def test_terminate_replaces_the_instance_through_the_group_and_boots_its_box(group_box, capsys):
    cloud, box = group_box
    old_port = box.ssh_port
    assert run_ssh(box, "touch", f"{box.workdir}/on-the-old-disk").returncode == 0
    capsys.readouterr()
    t0 = time.monotonic()
    assert main(["sandbox-notice", "--action", "terminate", "--in", "1"]) == 0
    took = time.monotonic() - t0
    lines = capsys.readouterr().out.splitlines()
    g = group_now(cloud, box)
    new = recover.group_instance_id(g)
    assert new != box.instance_id and g["DesiredCapacity"] == 1
    old = cloud.client("ec2").describe_instances(InstanceIds=[box.instance_id])["Reservations"][0]["Instances"][0]
    assert old["State"]["Name"] in ("shutting-down", "terminated")
    # A line each: the notice, the termination, the launch, the boxes gone and booted.
    assert lines[0].startswith(f"spot notice given: {box.instance_id}'s IMDS answers") and '"terminate"' in lines[0]
    assert lines[1].startswith(f"{box.instance_id} terminated (spot reclaim), through the Auto Scaling API")
    assert lines[2].startswith(f"{new} (g4dn.xlarge, us-east-1") and "launched by group trainbox-default" in lines[2]
    assert lines[3] == f"{box.instance_id}'s box is gone: powered off, its disk and its IMDS stand-in removed"
    assert lines[4].startswith(f"{new}'s process box booting: its own sshd on a fresh disk")
    assert lines[5].startswith(f"{new}'s box booted in ") and len(lines) == 6
    assert 1 <= took < 30
    # The old box is gone (its sshd and IMDS ended), the new one is made for the new instance ...
    assert boxes.made_for(box.name) == new and boxes.imds_endpoint(box.name) is None
    assert refused(old_port) or boxes.box_running(box.name).port == old_port
    # ... and the laptop's state is left for `follow`, which moves it to the new box.
    assert state.load(box.name).instance_id == box.instance_id
    assert lifecycle.status(cloud, box.name).instance_id == new
    moved = state.load(box.name)
    p = run_ssh(moved, f"echo new; ls -a {moved.workdir}")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] == "new" and "on-the-old-disk" not in p.stdout


def test_the_old_box_s_imds_stand_in_ends_with_it(group_box):
    cloud, box = group_box
    boxes.ensure_imds(box.name)
    rec = json.loads((boxes.box_dir(box.name) / "imds" / "server.json").read_text())
    assert main(["sandbox-notice", "--action", "terminate", "--in", "0.1"]) == 0
    assert not procs.alive(rec["pid"])


def test_terminate_on_a_box_without_a_group_is_refused_in_one_line(moto_endpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cloud = Cloud(boxes.REGION, moto_endpoint, sandbox=True)
    box = up(cloud, UpOptions(name="plain"), lambda s: None)
    try:
        capsys.readouterr()
        assert main(["sandbox-notice", "--name", "plain", "--action", "terminate"]) == UsageError.exit_code
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "box 'plain' is not a --recover box" in err[0], err
        live = cloud.client("ec2").describe_instances(InstanceIds=[box.instance_id])["Reservations"][0]
        assert live["Instances"][0]["State"]["Name"] == "running"
    finally:
        lifecycle.destroy(cloud, box.name, lambda s: None)
