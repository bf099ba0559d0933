"""`up` against moto in process: idempotence, the locked-down network, the
launch request, the key file, failures at every step, capacity and quota."""

from __future__ import annotations

import base64
import dataclasses
import stat
from collections import Counter

import pytest
from pvkit import (  # noqa: F401
    CIDR,
    Faulty,
    Recorder,
    WrappedCloud,
    aws,
    client_error,
    ec2,
    launch,
    live,
    moto_ami,
    moto_module,
    name,
    opts,
)

from common import paths, state
from common.errors import CloudError, UsageError
from provision import instance, lifecycle, preflight, teardown
from provision.up import UpOptions, up


def kinds(ec2, name) -> Counter:
    return Counter(r.kind for r in live(ec2, name))


def test_up_twice_makes_one_box(ec2, launch, name):
    first, _ = launch()
    second, said = launch()
    assert second.instance_id == first.instance_id
    assert any("reusing" in s for s in said)
    assert kinds(ec2, name) == Counter(
        {
            "instance": 1,
            "volume": 1,
            "vpc": 1,
            "subnet": 1,
            "internet-gateway": 1,
            "route-table": 1,
            "security-group": 1,
            "key-pair": 1,
        }
    )


def test_up_starts_a_stopped_box(ec2, launch):
    box, _ = launch()
    instance.stop(ec2, box.instance_id)
    again, _ = launch()
    assert again.instance_id == box.instance_id
    assert instance.get(ec2, box.instance_id).state == "running"


def test_two_names_make_two_boxes(ec2, launch, name):
    a, _ = launch(name=name + "a")
    b, _ = launch(name=name + "b")
    assert a.instance_id != b.instance_id
    assert kinds(ec2, name + "a")["vpc"] == kinds(ec2, name + "b")["vpc"] == 1


def ingress(ec2, name) -> list[dict]:
    (sg,) = [r for r in live(ec2, name) if r.kind == "security-group"]
    return ec2.describe_security_groups(GroupIds=[sg.id])["SecurityGroups"][0]["IpPermissions"]


def test_security_group_admits_ssh_from_one_address_only(ec2, launch, name):
    launch()
    (rule,) = ingress(ec2, name)
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22)
    assert [r["CidrIp"] for r in rule["IpRanges"]] == [CIDR]
    assert not rule.get("Ipv6Ranges") and not rule.get("UserIdGroupPairs")


def test_a_new_ssh_cidr_replaces_the_old_rule(ec2, launch, name):
    launch()
    launch(ssh_cidr="198.51.100.9/32")
    (rule,) = ingress(ec2, name)
    assert [r["CidrIp"] for r in rule["IpRanges"]] == ["198.51.100.9/32"]


def test_a_rule_added_by_hand_is_removed_by_up(ec2, launch, name):
    launch()
    (sg,) = [r for r in live(ec2, name) if r.kind == "security-group"]
    ec2.authorize_security_group_ingress(
        GroupId=sg.id,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 8888, "ToPort": 8888, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    launch()
    assert [(r["FromPort"], r["IpRanges"][0]["CidrIp"]) for r in ingress(ec2, name)] == [(22, CIDR)]


def test_the_whole_internet_needs_saying_and_is_warned_about(launch):
    _, said = launch(ssh_cidr="0.0.0.0/0")
    assert any("whole internet" in s for s in said)


def test_a_bad_cidr_is_bad_usage_before_any_aws_call(aws, name):
    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"called {name}")

    def no_aws(service, client):
        return NoCalls()

    with pytest.raises(UsageError, match="not a CIDR"):
        up(WrappedCloud("us-east-1", wrap=no_aws), opts(ssh_cidr="203.0.113.7/99", ami="ami-x", name=name), print)


def test_the_detected_address_is_used_when_no_cidr_is_given(aws, ec2, moto_ami, name):
    up(aws, UpOptions(wait=False, ami=moto_ami, name=name), lambda s: None, detect_cidr=lambda: "192.0.2.44/32")
    (rule,) = ingress(ec2, name)
    assert rule["IpRanges"][0]["CidrIp"] == "192.0.2.44/32"


# ---------------------------------------------------------------- the launch request


def test_instance_has_imdsv2_encrypted_gp3_root_and_stops_on_shutdown(ec2, launch):
    box, _ = launch(volume_gb=42, max_hours=2, idle_minutes=15)
    d = ec2.describe_instances(InstanceIds=[box.instance_id])["Reservations"][0]["Instances"][0]
    assert d["MetadataOptions"]["HttpTokens"] == "required"
    assert d["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    vol_id = d["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    vol = ec2.describe_volumes(VolumeIds=[vol_id])["Volumes"][0]
    assert (vol["Encrypted"], vol["VolumeType"], vol["Size"]) == (True, "gp3", 42)
    behaviour = ec2.describe_instance_attribute(
        InstanceId=box.instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"
    # boto3 base64-encodes UserData once; the box must receive the script itself (gzipped: cloud-init unpacks it).
    raw = base64.b64decode(
        ec2.describe_instance_attribute(InstanceId=box.instance_id, Attribute="userData")["UserData"]["Value"]
    )
    assert raw[:2] == b"\x1f\x8b" and len(raw) <= 16384
    from provision.up import user_data_text

    script = user_data_text(raw)
    assert script.startswith("#!/bin/bash")
    assert "max_seconds=7200" in script and "idle_seconds=900" in script


def test_run_instances_args_are_the_whole_request():
    spec = instance.LaunchSpec(
        "b", "ami-1", "/dev/sda1", "g4dn.xlarge", "k", "subnet-1", "sg-1", "#!/bin/bash\n", volume_gb=77
    )
    args = instance.run_instances_args(spec)
    assert args["MetadataOptions"]["HttpTokens"] == "required"
    assert args["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/sda1",
            "Ebs": {"VolumeSize": 77, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True},
        }
    ]
    assert args["InstanceInitiatedShutdownBehavior"] == "stop"
    assert args["NetworkInterfaces"][0]["Groups"] == ["sg-1"]
    assert args["UserData"] == "#!/bin/bash\n"
    assert "InstanceMarketOptions" not in args
    assert {t["ResourceType"] for t in args["TagSpecifications"]} == {"instance", "volume"}


def test_spot_is_a_persistent_request_that_stops_never_terminates():
    """The cost guards' `shutdown` and an interruption must stop a spot box
    (disk and results kept), which AWS allows only for persistent requests."""
    spec = instance.LaunchSpec(
        "b", "ami-1", "/dev/sda1", "g4dn.xlarge", "k", "subnet-1", "sg-1", "#!/bin/bash\n", spot=True
    )
    args = instance.run_instances_args(spec)
    assert args["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"},
    }
    assert args["InstanceInitiatedShutdownBehavior"] == "stop"
    # The request is tagged too, so `down` finds and cancels it from tags alone.
    assert {t["ResourceType"] for t in args["TagSpecifications"]} == {"instance", "volume", "spot-instances-request"}


def test_spot_reaches_the_request_and_shutdown_stops_it(ec2, launch):
    box, _ = launch(spot=True)
    d = ec2.describe_instances(InstanceIds=[box.instance_id])["Reservations"][0]["Instances"][0]
    assert d.get("InstanceLifecycle") == "spot"
    behaviour = ec2.describe_instance_attribute(
        InstanceId=box.instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"


def spot_request(ec2, name, image: str) -> str:
    """What `up --spot` leaves on AWS: a persistent, tagged spot request and its
    tagged instance (moto's run_instances keeps no spot request, so it is made here)."""
    from provision.tags import tags

    reply = ec2.request_spot_instances(
        Type="persistent",
        InstanceInterruptionBehavior="stop",
        LaunchSpecification={"ImageId": image, "InstanceType": "g4dn.xlarge"},
        TagSpecifications=[{"ResourceType": r, "Tags": tags(name)} for r in ("spot-instances-request", "instance")],
    )
    return reply["SpotInstanceRequests"][0]["SpotInstanceRequestId"]


def open_spot_requests(ec2, request_id: str) -> list:
    found = ec2.describe_spot_instance_requests(Filters=[{"Name": "spot-instance-request-id", "Values": [request_id]}])
    return [r for r in found["SpotInstanceRequests"] if r["State"] in ("open", "active", "disabled")]


def test_down_cancels_the_spot_request_before_terminating_its_instance(aws, ec2, moto_ami, name):
    """A persistent request whose instance is terminated first launches another one."""
    from provision.inventory import tagged_resources

    request_id = spot_request(ec2, name, moto_ami)
    assert ("spot-request", request_id) in {(r.kind, r.id) for r in tagged_resources(ec2, "us-east-1", name)}
    calls: list[str] = []
    cloud = WrappedCloud("us-east-1", wrap=lambda s, c: Recorder(c, calls) if s == "ec2" else c)
    removed = lifecycle.destroy(cloud, name, lambda s: None)
    assert ("spot-request", request_id) in {(r.kind, r.id) for r in removed}
    assert open_spot_requests(ec2, request_id) == []
    assert calls.index("cancel_spot_instance_requests") < calls.index("terminate_instances")
    assert live(ec2, name) == []


# ---------------------------------------------------------------- the key


def test_private_key_is_0600_in_a_0700_dir(launch, name):
    box, _ = launch()
    key = paths.key_path(name)
    assert box.key_path == str(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert "PRIVATE KEY" in key.read_text()


def key_pair_id(ec2, name) -> str:
    return ec2.describe_key_pairs(KeyNames=[f"trainbox-{name}"])["KeyPairs"][0]["KeyPairId"]


def test_a_lost_key_of_a_live_box_is_refused_not_replaced(ec2, launch, name):
    """The instance trusts only the old key: a new one would lock the user out."""
    box, _ = launch()
    key = paths.key_path(name)
    before = key_pair_id(ec2, name)
    key.unlink()
    with pytest.raises(UsageError) as caught:
        launch()
    message = str(caught.value)
    assert caught.value.exit_code == UsageError.exit_code and "\n" not in message
    assert str(key) in message and box.instance_id in message
    assert f"python -m provision down --name {name}" in message and "restore" in message
    assert not key.exists(), "a key the box refuses was written"
    assert key_pair_id(ec2, name) == before
    assert kinds(ec2, name)["instance"] == 1


def test_a_lost_key_with_no_instance_left_is_replaced(ec2, aws, launch, name):
    from provision import keys

    keys.ensure_key_pair(ec2, name)  # e.g. an `up` that stopped before launching
    key = paths.key_path(name)
    old, before = key.read_text(), key_pair_id(ec2, name)
    key.unlink()
    launch()
    assert key.exists() and key.read_text() != old
    assert key_pair_id(ec2, name) != before
    assert kinds(ec2, name)["key-pair"] == 1


def test_a_key_pair_deleted_in_aws_keeps_the_key_the_box_trusts(ec2, launch, name):
    box, _ = launch()
    key = paths.key_path(name)
    old = key.read_text()
    ec2.delete_key_pair(KeyName=f"trainbox-{name}")
    again, said = launch()
    assert again.instance_id == box.instance_id and any("reusing" in s for s in said)
    assert key.read_text() == old


# ---------------------------------------------------------------- failure at every step

CREATION_STEPS = [
    "create_vpc",
    "modify_vpc_attribute",
    "create_internet_gateway",
    "attach_internet_gateway",
    "create_route_table",
    "create_route",
    "create_subnet",
    "modify_subnet_attribute",
    "associate_route_table",
    "create_security_group",
    "authorize_security_group_ingress",
    "create_key_pair",
    "run_instances",
]


# Where a call creates something, Ctrl-C right after it (the resource exists,
# up never hears of it) is the worst case; refusing every call covers the rest.
CASES = [(step, False) for step in CREATION_STEPS] + [
    (step, True) for step in CREATION_STEPS if step.startswith(("create_", "run_"))
]


@pytest.mark.parametrize(
    ("step", "after"), CASES, ids=[f"{s}-{'interrupted-after' if a else 'refused'}" for s, a in CASES]
)
def test_failure_at_any_step_then_down_leaves_nothing(aws, ec2, moto_ami, step, after, name):
    exc = KeyboardInterrupt() if after else client_error("InternalError", step)
    faulty = {}

    def wrap(service, client):
        if service != "ec2":
            return client
        faulty.setdefault("ec2", Faulty(client, step, exc, after=after))
        return faulty["ec2"]

    cloud = WrappedCloud("us-east-1", wrap=wrap)
    with pytest.raises((CloudError, KeyboardInterrupt)) as caught:
        up(cloud, opts(ami=moto_ami, name=name), lambda s: None)
    assert faulty["ec2"].calls >= 1, f"{step} was never called"
    if not after:
        assert "\n" not in str(caught.value)
    if after:
        assert live(ec2, name), "the interrupted step had created something"
    lifecycle.destroy(aws, name, lambda s: None)
    assert live(ec2, name) == []
    assert not paths.key_path(name).exists()
    assert state.load(name) is None


def test_failure_while_waiting_for_the_instance_then_down(aws, ec2, moto_ami, name):
    cloud = WrappedCloud(
        "us-east-1", wrap=lambda s, c: Faulty(c, "get_waiter", KeyboardInterrupt(), nth=2) if s == "ec2" else c
    )
    with pytest.raises(KeyboardInterrupt):
        up(cloud, opts(ami=moto_ami, name=name), lambda s: None)
    assert kinds(ec2, name)["instance"] == 1
    lifecycle.destroy(aws, name, lambda s: None)
    assert live(ec2, name) == []


def test_orphaned_address_and_volume_are_listed_and_removed(aws, ec2, launch, name):
    from provision.inventory import tagged_resources
    from provision.tags import tag_spec

    launch()
    alloc = ec2.allocate_address(Domain="vpc", TagSpecifications=tag_spec("elastic-ip", name))["AllocationId"]
    vol = ec2.create_volume(Size=5, AvailabilityZone="us-east-1a", TagSpecifications=tag_spec("volume", name))[
        "VolumeId"
    ]
    found = {(r.kind, r.id) for r in tagged_resources(ec2, "us-east-1")}
    assert {("address", alloc), ("volume", vol)} <= found
    removed = teardown.destroy(ec2, "us-east-1", name, poll_s=0.01)
    assert {("address", alloc), ("volume", vol)} <= {(r.kind, r.id) for r in removed}
    assert live(ec2, name) == []


def test_down_of_one_box_leaves_the_other(aws, ec2, launch, name):
    launch(name=name + "a")
    launch(name=name + "b")
    lifecycle.destroy(aws, name + "a", lambda s: None)
    assert live(ec2, name + "a") == []
    assert kinds(ec2, name + "b")["instance"] == 1


def test_teardown_that_leaves_something_says_so(aws, ec2, launch, name):
    launch()
    cloud = WrappedCloud(
        "us-east-1",
        wrap=lambda s, c: Faulty(c, "delete_vpc", client_error("DependencyViolation"), times=99) if s == "ec2" else c,
    )
    with pytest.raises(CloudError, match="DependencyViolation"):
        lifecycle.destroy(cloud, name, lambda s: None)


def test_teardown_counts_notfound_as_done(aws, ec2, launch, name):
    launch()
    cloud = WrappedCloud(
        "us-east-1",
        wrap=lambda s, c: (
            Faulty(c, "delete_key_pair", client_error("InvalidKeyPair.NotFound"), after=True) if s == "ec2" else c
        ),
    )
    lifecycle.destroy(cloud, name, lambda s: None)
    assert live(ec2, name) == []


# ---------------------------------------------------------------- capacity and quota


def test_no_capacity_in_the_first_zone_launches_in_the_next(aws, ec2, moto_ami, name):
    cloud = WrappedCloud(
        "us-east-1",
        wrap=lambda s, c: Faulty(c, "run_instances", client_error("InsufficientInstanceCapacity")) if s == "ec2" else c,
    )
    said = []
    box = up(cloud, opts(ami=moto_ami, name=name), said.append)
    zones = preflight.offered_zones(ec2, "g4dn.xlarge")
    assert instance.get(ec2, box.instance_id).zone == zones[1]
    assert any(f"no g4dn.xlarge capacity in {zones[0]}" in s for s in said)
    lifecycle.destroy(aws, name, lambda s: None)
    assert live(ec2, name) == []


def test_no_capacity_anywhere_is_one_line(aws, ec2, moto_ami, name):
    cloud = WrappedCloud(
        "us-east-1",
        wrap=lambda s, c: (
            Faulty(c, "run_instances", client_error("InsufficientInstanceCapacity"), times=99) if s == "ec2" else c
        ),
    )
    with pytest.raises(CloudError, match="no capacity") as caught:
        up(cloud, opts(ami=moto_ami, name=name), lambda s: None)
    assert caught.value.exit_code == CloudError.exit_code and "\n" not in str(caught.value)


def stub_quota(aws, value=None, code="L-DB2E81BA", error=None):
    from botocore.stub import Stubber

    stubber = Stubber(aws.client("service-quotas"))
    params = {"ServiceCode": "ec2", "QuotaCode": code}
    if error:
        stubber.add_client_error("get_service_quota", service_error_code=error, expected_params=params)
    else:
        stubber.add_response("get_service_quota", {"Quota": {"Value": value}}, params)
    stubber.activate()
    return stubber


def test_quota_too_low_fails_before_anything_is_made(aws, ec2, moto_ami, name):
    stubber = stub_quota(aws, value=0.0)
    with pytest.raises(
        CloudError, match=r"'Running On-Demand G and VT instances' quota is 0 vCPUs; g4dn.xlarge needs 4"
    ) as caught:
        up(aws, opts(ami=moto_ami, name=name), lambda s: None)
    stubber.assert_no_pending_responses()
    assert "Service Quotas" in str(caught.value)
    assert live(ec2, name) == []


def test_enough_quota_passes(aws):
    stubber = stub_quota(aws, value=8.0)
    check = preflight.check_quota(aws, "g4dn.xlarge", spot=False)
    stubber.assert_no_pending_responses()
    assert (check.limit, check.needed, check.ok) == (8.0, 4, True)


def test_spot_and_p_types_read_their_own_quotas(aws):
    stubber = stub_quota(aws, value=96.0, code="L-3819A6DF")
    assert preflight.check_quota(aws, "g5.xlarge", spot=True).name == "All G and VT Spot Instance Requests"
    stubber.assert_no_pending_responses()
    stubber.add_response(
        "get_service_quota", {"Quota": {"Value": 0.0}}, {"ServiceCode": "ec2", "QuotaCode": "L-417A185B"}
    )
    check = preflight.quota_for(aws, "p3.2xlarge", False, 8)
    assert (check.name, check.limit, check.ok) == ("Running On-Demand P instances", 0.0, False)
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("itype", "family"),
    [
        ("g4dn.xlarge", "g"),
        ("g5.2xlarge", "g"),
        ("g6e.xlarge", "g"),
        ("p3.2xlarge", "p"),
        ("p5.48xlarge", "p"),
        ("vt1.3xlarge", "vt"),
        ("t3.micro", "t"),
    ],
)
def test_quota_family(itype, family):
    assert preflight.quota_family(itype) == family


def test_unknown_quota_warns_and_launches(aws, ec2, moto_ami, name):
    stub_quota(aws, error="NoSuchResourceException")
    said = []
    up(aws, opts(ami=moto_ami, name=name), said.append)
    assert any("could not read the 'Running On-Demand G and VT instances' quota" in s for s in said)
    assert kinds(ec2, name)["instance"] == 1


def test_type_not_offered_lists_offered_gpu_types(aws):
    with pytest.raises(UsageError) as caught:
        preflight.check_offered(aws, "p2.xlarge")
    message = str(caught.value)
    assert caught.value.exit_code == UsageError.exit_code
    assert "p2.xlarge is not offered in us-east-1" in message
    assert "g4dn.xlarge" in message and "g5.xlarge" in message
    assert "g4dn.2xlarge" not in message  # the smallest of each family only


def test_up_does_not_reuse_a_box_that_is_shutting_down(ec2, launch, monkeypatch):
    box, _ = launch()
    real_find = instance.find_nodes
    seen = []

    def find_dying(client, box_name):
        """The first look sees the instance mid-termination, as AWS can report it."""
        found = real_find(client, box_name)
        if not seen and found:
            seen.append(found[0].id)
            client.terminate_instances(InstanceIds=[found[0].id])
            return [dataclasses.replace(found[0], state="shutting-down")]
        return found

    monkeypatch.setattr(instance, "find_nodes", find_dying)
    again, said = launch()
    assert seen == [box.instance_id]
    assert again.instance_id != box.instance_id
    assert not any("reusing" in s for s in said)
    assert instance.get(ec2, again.instance_id).state == "running"
