"""The sandbox plays a --recover box's group (issue 25, stage 2): moto on 127.0.0.1 is the
group, the process box is each instance it launches. When the group's instance is
terminated (a spot reclaim), or stops (AWS's health check replaces a stopped instance), the
replacement gets a new box of its own (a fresh disk), the old one is gone, and `state`, `ip`
and `ssh` follow the new one."""

from __future__ import annotations

from pvkit import SSH, group_box, run_ssh  # noqa: F401

from cli.provision_main import main
from common import hostkeys, state
from provision import lifecycle, recover
from provision.up import UpOptions, up
from sandbox import boxes
from testkit import refused, tagged


def group_instance(cloud, box) -> str:
    g = recover.describe_group(cloud.client("autoscaling"), recover.group_name(box.name))
    return recover.group_instance_id(g)


def instance_state(cloud, iid) -> str:
    d = cloud.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return d["State"]["Name"]


def test_the_group_s_first_instance_is_the_sandbox_box(group_box):
    cloud, box = group_box
    assert box.instance_id == group_instance(cloud, box)
    assert run_ssh(box, "echo", "first").stdout.strip() == "first"


def test_a_terminated_instance_s_replacement_gets_a_new_box_that_state_ip_and_ssh_follow(group_box, capsys):
    cloud, box = group_box
    assert run_ssh(box, "touch", f"{box.workdir}/on-the-old-disk").returncode == 0
    old_port = box.ssh_port
    cloud.client("ec2").terminate_instances(InstanceIds=[box.instance_id])  # a spot reclaim
    s = lifecycle.status(cloud, box.name)
    now = group_instance(cloud, box)
    assert s.instance_id == now != box.instance_id and s.state == "running"
    moved = state.load(box.name)
    assert moved.instance_id == now
    assert moved.extra["replaced"][-1]["instance"] == box.instance_id
    # The old instance's box is gone with it (its sshd ended, its pin dropped) ...
    assert refused(old_port) or moved.ssh_port == old_port
    if moved.ssh_port != old_port:
        assert hostkeys.pinned("127.0.0.1", old_port) == []
    # ... and the new one answers, on a fresh disk, with its own pinned host key.
    p = run_ssh(moved, f"echo new; ls -a {moved.workdir}")  # one string: the remote shell runs it
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] == "new" and "on-the-old-disk" not in p.stdout
    capsys.readouterr()
    assert main(["ip"]) == 0
    assert capsys.readouterr().out.strip() == "127.0.0.1"
    assert main(["state"]) == 0
    out = capsys.readouterr().out
    assert now in out and "replaced 1x" in out


def test_a_stopped_instance_is_replaced_as_the_group_s_health_check_does(group_box):
    cloud, box = group_box
    cloud.client("ec2").stop_instances(InstanceIds=[box.instance_id])
    s = lifecycle.status(cloud, box.name)
    assert s.instance_id != box.instance_id
    assert instance_state(cloud, box.instance_id) in ("shutting-down", "terminated")
    g = recover.describe_group(cloud.client("autoscaling"), recover.group_name(box.name))
    assert g["DesiredCapacity"] == 1  # terminated without lowering it: the group launched another
    assert run_ssh(state.load(box.name), "echo", "ok").stdout.strip() == "ok"


def test_a_box_that_shut_itself_down_is_replaced_too(group_box):
    cloud, box = group_box
    boxes.stop_box(box.name)  # the guest is gone; the template's shutdown behaviour is terminate
    s = lifecycle.status(cloud, box.name)
    assert s.instance_id != box.instance_id
    assert instance_state(cloud, box.instance_id) in ("shutting-down", "terminated")
    assert run_ssh(state.load(box.name), "echo", "ok").returncode == 0


def test_down_after_a_replacement_leaves_nothing(moto_endpoint, group_box):
    cloud, box = group_box
    cloud.client("ec2").terminate_instances(InstanceIds=[box.instance_id])
    lifecycle.status(cloud, box.name)
    lifecycle.destroy(cloud, box.name, lambda s: None)
    assert tagged(moto_endpoint) == []
    asg = cloud.client("autoscaling")
    assert asg.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert box.name not in boxes.sandbox_boxes()


def test_up_again_after_a_replacement_reaches_the_new_instance_s_box(group_box):
    cloud, box = group_box
    assert run_ssh(box, "touch", f"{box.workdir}/on-the-old-disk").returncode == 0
    cloud.client("ec2").terminate_instances(InstanceIds=[box.instance_id])
    again = up(cloud, UpOptions(spot=True, recover=True), lambda s: None)
    assert again.instance_id == group_instance(cloud, box) != box.instance_id
    p = run_ssh(again, f"ls -a {again.workdir}")
    assert p.returncode == 0 and "on-the-old-disk" not in p.stdout


def test_stop_sets_the_group_to_zero_and_start_launches_a_new_instance(group_box, capsys):
    """A --recover box's stop is its group at 0 (the guard's release does the same from the
    box): nothing left billing, no replacement; start sets it back to 1, a new instance."""
    cloud, box = group_box
    capsys.readouterr()
    assert main(["stop"]) == 0
    said = capsys.readouterr().out
    assert f"box '{box.name}' is stopped: its group is at 0 instances ({box.instance_id} " in said, said
    g = recover.describe_group(cloud.client("autoscaling"), recover.group_name(box.name))
    assert (g["MinSize"], g["DesiredCapacity"]) == (0, 0) and recover.group_instance_id(g) is None
    assert instance_state(cloud, box.instance_id) in ("shutting-down", "terminated")
    assert boxes.box_running(box.name) is None, "its machine went with the instance"
    s = lifecycle.status(cloud, box.name)
    assert s.state == "stopped" and "at 0 instances" in (s.spot or "")
    assert main(["stop"]) == 0, "stopping a stopped box is not an error"
    assert "is stopped: its group is at 0 instances" in capsys.readouterr().out
    assert main(["ssh", "--", "true"]) != 0
    assert "start it with `python -m provision start`" in capsys.readouterr().err
    assert main(["start"]) == 0
    now = group_instance(cloud, box)
    assert now != box.instance_id and lifecycle.status(cloud, box.name).state == "running"
    assert run_ssh(state.load(box.name), "echo", "back").stdout.strip() == "back"
