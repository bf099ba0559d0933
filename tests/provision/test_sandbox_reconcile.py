"""The sandbox's boxes reconcile with moto (sandbox/cloud.py): ``cloud.settle`` asks moto which
instances of the box exist in which state and makes the boxes match, whoever changed them;
on AWS itself the hooks do nothing."""

from __future__ import annotations

from pvkit import run_ssh, sandbox_box  # noqa: F401

from common.aws import Cloud
from provision import instance
from sandbox import boxes


def sandbox_cloud(moto_endpoint: str) -> Cloud:
    return Cloud(boxes.REGION, moto_endpoint, sandbox=True)


def test_aws_itself_has_no_stand_in_and_its_hooks_touch_nothing():
    aws = Cloud("us-east-1")
    assert aws.stand_in is None and aws.poll_s is None and aws.has_quotas and not aws.own_addresses
    assert aws.ssh_cidr is None and aws.box_build is None and aws.state_endpoint is None
    # No AWS call is made (there are no credentials or endpoint here to make one).
    aws.observe("nobody")
    aws.settle("nobody")
    aws.settle_image("ami-0")


def test_the_sandbox_cloud_says_what_moto_lacks(moto_endpoint):
    cloud = sandbox_cloud(moto_endpoint)
    assert cloud.where == f"{boxes.REGION}, sandbox" and cloud.own_addresses and not cloud.has_quotas
    assert cloud.ssh_cidr == "127.0.0.1/32" and cloud.box_build == "cpu"
    assert cloud.state_endpoint == moto_endpoint
    assert Cloud.of_box(boxes.REGION, moto_endpoint) == cloud
    assert Cloud.of_box("eu-west-1", None).stand_in is None


def test_an_instance_stopped_through_ec2_itself_powers_its_box_off_at_the_next_settle(moto_endpoint, sandbox_box):
    cloud = sandbox_cloud(moto_endpoint)
    ec2 = cloud.client("ec2")
    assert boxes.box_running(sandbox_box.name) is not None
    ec2.stop_instances(InstanceIds=[sandbox_box.instance_id])  # not `provision stop`: moto alone knows
    instance.wait(ec2, sandbox_box.instance_id, "stopped")
    cloud.settle(sandbox_box.name)
    assert boxes.box_running(sandbox_box.name) is None
    ec2.start_instances(InstanceIds=[sandbox_box.instance_id])
    instance.wait(ec2, sandbox_box.instance_id, "running")
    cloud.settle(sandbox_box.name, box=sandbox_box)
    assert boxes.box_running(sandbox_box.name) is not None
    assert run_ssh(sandbox_box, "echo", "back").stdout.strip() == "back"


def test_a_terminated_instance_takes_its_box_and_disk_with_it(moto_endpoint, sandbox_box):
    cloud = sandbox_cloud(moto_endpoint)
    ec2 = cloud.client("ec2")
    disk = boxes.box_workdir(sandbox_box.name)
    (disk / "mine").write_text("x")
    ec2.terminate_instances(InstanceIds=[sandbox_box.instance_id])
    instance.wait(ec2, sandbox_box.instance_id, "terminated")
    cloud.settle(sandbox_box.name)
    assert sandbox_box.name not in boxes.sandbox_boxes() and not disk.exists()
