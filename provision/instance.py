"""The box's EC2 instance: find it by tag, launch, start, stop."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from common import hostkeys
from common.aws import error_code

from .tags import TAG_NAME, TAG_NODE, name_filters, node_of, tag_value, tags

LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


@dataclass(frozen=True)
class Instance:
    id: str
    name: str
    state: str
    type: str
    zone: str
    image_id: str
    public_ip: str | None
    launch_time: datetime | None
    spot: bool = False  # launched from a spot request
    spot_request_id: str | None = None
    node: int = 0  # its index in a multi-node box (tags.TAG_NODE)
    private_ip: str | None = None

    @classmethod
    def from_boto(cls, d: dict) -> Instance:
        return cls(
            id=d["InstanceId"],
            name=tag_value(d, TAG_NAME) or "",
            state=d["State"]["Name"],
            type=d["InstanceType"],
            zone=d.get("Placement", {}).get("AvailabilityZone", ""),
            image_id=d.get("ImageId", ""),
            public_ip=d.get("PublicIpAddress"),
            launch_time=d.get("LaunchTime"),
            spot=d.get("InstanceLifecycle") == "spot",
            spot_request_id=d.get("SpotInstanceRequestId"),
            node=node_of(d),
            private_ip=d.get("PrivateIpAddress"),
        )


def find_all(ec2, name: str | None, states: list[str] = LIVE_STATES) -> list[Instance]:
    filters = name_filters(name) + [{"Name": "instance-state-name", "Values": states}]
    found: list[Instance] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            found.extend(Instance.from_boto(i) for i in reservation["Instances"])
    return found


def find(ec2, name: str) -> Instance | None:
    """The box's node 0 (the box itself, for a box of one node), or None."""
    nodes = find_nodes(ec2, name)
    return nodes[0] if nodes else None


def find_nodes(ec2, name: str) -> list[Instance]:
    """The box's live instances, by node index (node 0 first)."""
    return sorted(find_all(ec2, name), key=lambda i: (i.node, i.id))


def get(ec2, instance_id: str) -> Instance:
    r = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return Instance.from_boto(r[0]["Instances"][0])


@dataclass(frozen=True)
class LaunchSpec:
    name: str
    image_id: str
    root_device: str
    instance_type: str
    key_name: str
    subnet_id: str
    security_group_id: str
    user_data: str | bytes  # a script, or its gzip (up.user_data_payload)
    volume_gb: int = 100
    spot: bool = False
    node: int = 0  # this instance's index in the box (tagged, tags.TAG_NODE)
    placement_group: str | None = None  # a multi-node box's cluster group (provision/placement.py)


def run_instances_args(spec: LaunchSpec) -> dict:
    """The run_instances request, kept pure so tests can read it whole."""
    tagged = ["instance", "volume"] + (["spot-instances-request"] if spec.spot else [])
    args = dict(
        ImageId=spec.image_id,
        InstanceType=spec.instance_type,
        MinCount=1,
        MaxCount=1,
        KeyName=spec.key_name,
        # Not base64: boto3 base64-encodes RunInstances' UserData itself (encoding
        # it here too would hand cloud-init base64, not a script or its gzip).
        UserData=spec.user_data,
        NetworkInterfaces=[
            {
                "DeviceIndex": 0,
                "SubnetId": spec.subnet_id,
                "Groups": [spec.security_group_id],
                "AssociatePublicIpAddress": True,
            }
        ],
        # IMDSv2 only: a process on the box cannot read instance credentials
        # with a plain GET, and a hop limit of 1 keeps containers out.
        MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
        BlockDeviceMappings=[
            {
                "DeviceName": spec.root_device,
                "Ebs": {
                    "VolumeSize": spec.volume_gb,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
        # The cost guards shut the box down from inside: that must stop it,
        # keeping its disk, never terminate it (spot boxes too, see below).
        InstanceInitiatedShutdownBehavior="stop",
        TagSpecifications=[{"ResourceType": r, "Tags": tags(spec.name, {TAG_NODE: str(spec.node)})} for r in tagged],
    )
    if spec.placement_group:
        args["Placement"] = {"GroupName": spec.placement_group}
    if spec.spot:
        # AWS stops a spot instance (on interruption, `stop`, or the guards'
        # `shutdown`) only if its request is persistent; a one-time request
        # would terminate it, taking disk and results. A persistent request
        # relaunches when its instance is terminated: `down` cancels it first.
        args["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"},
        }
    return args


def launch(ec2, spec: LaunchSpec) -> Instance:
    reply = ec2.run_instances(**run_instances_args(spec))
    return Instance.from_boto(reply["Instances"][0])


def wait(ec2, instance_id: str, state: str) -> Instance:
    waiter = {"running": "instance_running", "stopped": "instance_stopped", "terminated": "instance_terminated"}[state]
    ec2.get_waiter(waiter).wait(InstanceIds=[instance_id], WaiterConfig={"Delay": 5, "MaxAttempts": 120})
    return get(ec2, instance_id)


def start(ec2, instance_id: str) -> Instance:
    ec2.start_instances(InstanceIds=[instance_id])
    return wait(ec2, instance_id, "running")


def stop(ec2, instance_id: str, wait_stopped: bool = True) -> Instance:
    ec2.stop_instances(InstanceIds=[instance_id])
    return wait(ec2, instance_id, "stopped") if wait_stopped else get(ec2, instance_id)


def is_capacity_error(exc: Exception) -> bool:
    return error_code(exc) in ("InsufficientInstanceCapacity", "Unsupported", "InsufficientCapacity")


def console_host_keys(ec2, instance_id: str) -> list[str]:
    """The host keys cloud-init printed to the console, or [] (not there yet, or no access)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        output = ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output", "")
    except (ClientError, BotoCoreError):  # best effort: first-use pinning follows
        return []
    return hostkeys.keys_from_console(output)
