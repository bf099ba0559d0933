"""`up --spot --recover` against moto in process (issue 25, the AWS side): an Auto Scaling
group of one over several spot types and every zone that offers them, its launch template
with what `up` sets, `state`/`ip`/`ls` following the group's instance, and `down` leaving
nothing tagged (with its state and without)."""

from __future__ import annotations

import base64

import pytest
from pvkit import aws, ec2, launch, live, moto_ami, moto_module, name  # noqa: F401

from common import state
from common.errors import UsageError
from provision import lifecycle, recover
from provision.tags import TAG_MANAGED, TAG_NAME, name_filters, tag_value
from provision.up import user_data_text


@pytest.fixture
def asg(aws):
    return aws.client("autoscaling")


def group_of(asg, name) -> dict:
    (g,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[recover.group_name(name)])["AutoScalingGroups"]
    return g


def zones_offering(ec2, types) -> set[str]:
    offers = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": list(types)}]
    )["InstanceTypeOfferings"]
    return {o["Location"] for o in offers}


def nothing_tagged(ec2, asg, name) -> dict:
    """What boto3 still finds tagged for the box, by kind (AWS's own lists, not trainbox's survey)."""
    left = {
        "group": asg.describe_auto_scaling_groups(Filters=[{"Name": f"tag:{TAG_NAME}", "Values": [name]}])[
            "AutoScalingGroups"
        ],
        "template": ec2.describe_launch_templates(Filters=name_filters(name))["LaunchTemplates"],
        "other": live(ec2, name),
    }
    return {k: v for k, v in left.items() if v}


def test_up_recover_makes_a_group_of_one_over_the_peers_in_every_offering_zone(ec2, asg, launch, name):
    box, said = launch(spot=True, recover=True)
    assert not [line for line in said if "not finished" in line], said
    g = group_of(asg, name)
    assert (g["MinSize"], g["MaxSize"], g["DesiredCapacity"]) == (1, 1, 1)
    assert g["CapacityRebalance"] is True
    policy = g["MixedInstancesPolicy"]
    wanted = ["g4dn.xlarge", *recover.PEERS["g4dn.xlarge"]]
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == wanted
    dist = policy["InstancesDistribution"]
    assert (dist["OnDemandBaseCapacity"], dist["OnDemandPercentageAboveBaseCapacity"]) == (0, 0)  # all spot
    assert dist["SpotAllocationStrategy"] == "price-capacity-optimized"
    subnets = ec2.describe_subnets(SubnetIds=g["VPCZoneIdentifier"].split(","))["Subnets"]
    assert {s["AvailabilityZone"] for s in subnets} == zones_offering(ec2, wanted)
    assert len(subnets) == len({s["AvailabilityZone"] for s in subnets})  # one per zone
    (vpc,) = ec2.describe_vpcs(Filters=name_filters(name))["Vpcs"]
    assert {s["VpcId"] for s in subnets} == {vpc["VpcId"]}
    assert all(tag_value(s, TAG_NAME) == name for s in subnets)
    assert {(t["Key"], t["Value"]) for t in g["Tags"]} >= {(TAG_MANAGED, "true"), (TAG_NAME, name)}
    # The state records the group, and the box is the group's instance.
    assert box.extra["group"] == recover.group_name(name)
    assert box.instance_id == g["Instances"][0]["InstanceId"]
    assert state.load(name).extra["group"] == recover.group_name(name)
    assert any("group" in s for s in said)


def test_the_launch_template_holds_what_up_sets(ec2, asg, launch, name, moto_ami):
    box, _ = launch(spot=True, recover=True, volume_gb=42)
    lt = group_of(asg, name)["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
    (version,) = ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"])[
        "LaunchTemplateVersions"
    ]
    data = version["LaunchTemplateData"]
    assert data["ImageId"] == moto_ami
    assert data["KeyName"] == f"trainbox-{name}"
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    (root,) = data["BlockDeviceMappings"]
    assert (root["Ebs"]["Encrypted"], root["Ebs"]["VolumeType"], root["Ebs"]["VolumeSize"]) == (True, "gp3", 42)
    assert root["Ebs"]["DeleteOnTermination"] is True
    (nic,) = data["NetworkInterfaces"]
    (sg,) = ec2.describe_security_groups(Filters=name_filters(name))["SecurityGroups"]
    assert nic["Groups"] == [sg["GroupId"]] and nic["AssociatePublicIpAddress"] is True
    assert "SubnetId" not in nic  # the group picks the zone
    # Spot comes from the group's policy: a template that asks for spot is refused with a mixed policy.
    assert "InstanceMarketOptions" not in data
    script = user_data_text(base64.b64decode(data["UserData"]))
    assert script.startswith("#!") and "trainbox-agent" in script
    tagged = {t["ResourceType"]: {x["Key"]: x["Value"] for x in t["Tags"]} for t in data["TagSpecifications"]}
    assert tagged["instance"][TAG_NAME] == tagged["volume"][TAG_NAME] == name
    (found,) = ec2.describe_launch_templates(Filters=name_filters(name))["LaunchTemplates"]
    assert found["LaunchTemplateId"] == lt["LaunchTemplateId"]


def test_instance_types_are_the_ones_given_in_their_order(asg, launch, name):
    launch(spot=True, recover=True, instance_types=["g6.xlarge", "g5.xlarge"])
    overrides = group_of(asg, name)["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    assert [o["InstanceType"] for o in overrides] == ["g6.xlarge", "g5.xlarge"]


def test_a_type_no_zone_offers_is_refused_before_anything_is_made(ec2, asg, launch, name):
    with pytest.raises(UsageError, match="x9.large"):
        launch(spot=True, recover=True, instance_types=["g5.xlarge", "x9.large"])
    assert nothing_tagged(ec2, asg, name) == {}


@pytest.mark.parametrize(
    "kw, says",
    [
        (dict(recover=True), "--recover needs --spot"),
        (dict(spot=True, recover=True, nodes=2), "--nodes"),
        (dict(instance_types=["g5.xlarge"]), "--instance-types needs --recover"),
    ],
)
def test_recover_is_refused_where_it_cannot_hold(ec2, asg, launch, name, kw, says):
    with pytest.raises(UsageError, match=says):
        launch(**kw)
    assert nothing_tagged(ec2, asg, name) == {}


def test_without_recover_up_makes_no_group_and_no_template(ec2, asg, launch, name):
    box, _ = launch(spot=True)
    assert not asg.describe_auto_scaling_groups(Filters=[{"Name": f"tag:{TAG_NAME}", "Values": [name]}])[
        "AutoScalingGroups"
    ]
    assert not ec2.describe_launch_templates(Filters=name_filters(name))["LaunchTemplates"]
    assert "group" not in box.extra


def test_up_recover_twice_reuses_the_group(ec2, asg, launch, name):
    first, _ = launch(spot=True, recover=True)
    second, said = launch(spot=True, recover=True)
    assert second.instance_id == first.instance_id
    assert any("reusing group" in s for s in said)
    assert len(ec2.describe_launch_templates(Filters=name_filters(name))["LaunchTemplates"]) == 1
    assert len(group_of(asg, name)["Instances"]) == 1


def test_a_box_made_without_recover_is_not_turned_into_a_group(asg, launch, name):
    launch(spot=True)
    with pytest.raises(UsageError, match="without --recover"):
        launch(spot=True, recover=True)


def test_state_ip_and_ls_follow_the_instance_the_group_has_now(aws, ec2, asg, launch, name, capsys):
    from cli.provision_main import main

    box, _ = launch(spot=True, recover=True)
    ec2.terminate_instances(InstanceIds=[box.instance_id])  # moto's group replaces it at once (AWS: minutes)
    (now,) = [i["InstanceId"] for i in group_of(asg, name)["Instances"]]
    assert now != box.instance_id
    s = lifecycle.status(aws, name)
    assert s.instance_id == now and s.state == "running"
    assert "replaced" in s.spot and box.instance_id in s.spot
    kept = state.load(name)
    assert kept.instance_id == now
    new = ec2.describe_instances(InstanceIds=[now])["Reservations"][0]["Instances"][0]
    assert kept.ssh_host == new.get("PublicIpAddress", "")
    assert kept.extra["replaced"][-1]["instance"] == box.instance_id
    capsys.readouterr()
    assert main(["state", "--name", name]) == 0
    assert now in capsys.readouterr().out
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert recover.group_name(name) in out and "launch-template" in out


def test_stop_sets_a_group_box_to_zero_instances_and_state_says_stopped(aws, asg, launch, name):
    box, _ = launch(spot=True, recover=True)
    stopped = lifecycle.stop(aws, name)
    assert stopped.id == box.instance_id and stopped.state in ("shutting-down", "terminated")
    g = group_of(asg, name)
    assert (g["MinSize"], g["DesiredCapacity"]) == (0, 0)
    assert lifecycle.status(aws, name).state == "stopped"


@pytest.mark.parametrize("with_state", [True, False])
def test_down_deletes_the_group_template_subnets_and_the_rest(aws, ec2, asg, launch, name, with_state):
    box, _ = launch(spot=True, recover=True)
    assert len(group_of(asg, name)["VPCZoneIdentifier"].split(",")) > 1
    if not with_state:
        state.forget(name)
    said: list[str] = []
    removed = lifecycle.destroy(aws, name, said.append)
    kinds = {r.kind for r in removed}
    assert {"auto-scaling-group", "launch-template", "instance", "subnet", "vpc", "key-pair"} <= kinds
    assert nothing_tagged(ec2, asg, name) == {}
    assert ec2.describe_instances(InstanceIds=[box.instance_id])["Reservations"][0]["Instances"][0]["State"][
        "Name"
    ] in ("shutting-down", "terminated")
    # Again: nothing left, nothing to do, no error.
    assert lifecycle.destroy(aws, name, said.append) == []


def test_the_cli_flags_reach_the_group(ec2, asg, moto_ami, name, capsys):
    from cli.provision_main import main

    argv = ["up", "--name", name, "--spot", "--recover", "--instance-types", "g6.xlarge,g5.xlarge"]
    assert main([*argv, "--ami", moto_ami, "--ssh-cidr", "203.0.113.7/32", "--no-wait"]) == 0
    g = group_of(asg, name)
    assert [o["InstanceType"] for o in g["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]] == [
        "g6.xlarge",
        "g5.xlarge",
    ]
    assert g["Instances"][0]["InstanceId"] in capsys.readouterr().out


def test_a_malformed_instance_types_list_is_bad_usage(capsys):
    from cli.provision_main import main
    from common.errors import UsageError

    with pytest.raises(SystemExit) as e:
        main(["up", "--spot", "--recover", "--instance-types", "g5.xlarge,;rm"])
    assert e.value.code == UsageError.exit_code
    assert "--instance-types" in capsys.readouterr().err
