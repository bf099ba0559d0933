"""Everything trainbox has in a region, found by tags alone (orphans too)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from . import placement
from .instance import LIVE_STATES
from .tags import TAG_NAME, TAG_NODE, name_filters, tag_value

SPOT_LIVE_STATES = ["open", "active", "disabled"]  # the others can no longer launch anything

# Dependency order: what must go first when tearing down. A --recover box's Auto Scaling
# group would launch a new instance for each one terminated: it goes first (with its
# instances), its launch template once it has gone. A persistent spot
# request relaunches its instance when that is terminated: it goes first.
# A placement group can go only once its instances have.
# Images (provision/images.py) come last: they outlive the box, and `down`
# removes them only when asked (--images).
KINDS = [
    "auto-scaling-group",
    "spot-request",
    "instance",
    "launch-template",
    "placement-group",
    "address",
    "volume",
    "security-group",
    "subnet",
    "route-table",
    "internet-gateway",
    "vpc",
    "key-pair",
    "image",
    "snapshot",
]
IMAGE_KINDS = ("image", "snapshot")


@dataclass(frozen=True)
class Resource:
    kind: str
    id: str
    box: str
    region: str
    state: str = ""
    detail: str = ""


@dataclass
class Survey:
    """What a search by tags found, and the kinds it could not look at (kind -> why)."""

    resources: list[Resource]
    unchecked: dict[str, Exception]


def tagged_resources(ec2, region: str, name: str | None = None, autoscaling=None) -> list[Resource]:
    """Every trainbox-tagged resource that can bill or block (of one box, if named).
    A kind whose Describe call fails (after botocore's retries) raises its error.
    ``autoscaling``: the region's Auto Scaling client, to look for --recover groups too."""
    found = survey(ec2, region, name, autoscaling)
    for error in found.unchecked.values():
        raise error
    return found.resources


def survey(ec2, region: str, name: str | None = None, autoscaling=None) -> Survey:
    """tagged_resources that looks at every kind it can: a kind whose Describe call
    keeps failing is named in ``unchecked`` and the others are still listed (so
    `down` deletes all it can find when one call is refused or not implemented)."""
    from botocore.exceptions import BotoCoreError, ClientError

    f = name_filters(name)
    out: list[Resource] = []
    unchecked: dict[str, Exception] = {}

    def add(kind, items, id_key, state=lambda r: "", detail=lambda r: ""):
        for r in items:
            out.append(Resource(kind, r[id_key], tag_value(r, TAG_NAME) or "?", region, state(r), detail(r)))

    def look(kind, describe):
        try:
            return describe()
        except (ClientError, BotoCoreError) as e:
            unchecked[kind] = e
            return []

    def paged(operation, key, **kwargs):
        items = []
        for page in ec2.get_paginator(operation).paginate(**kwargs):
            items.extend(page[key])
        return items

    if autoscaling is not None:
        groups = look(
            "auto-scaling-group",
            lambda: [
                g
                for page in autoscaling.get_paginator("describe_auto_scaling_groups").paginate(Filters=f)
                for g in page["AutoScalingGroups"]
            ],
        )
        add(
            "auto-scaling-group",
            groups,
            "AutoScalingGroupName",
            lambda r: r.get("Status", "") or "active",
            lambda r: f"{len(r.get('Instances', []))}/{r.get('DesiredCapacity', '?')} instance(s)",
        )
    spot = look(
        "spot-request",
        lambda: ec2.describe_spot_instance_requests(Filters=f + [{"Name": "state", "Values": SPOT_LIVE_STATES}])[
            "SpotInstanceRequests"
        ],
    )
    add("spot-request", spot, "SpotInstanceRequestId", lambda r: r["State"], lambda r: r.get("Type", ""))
    reservations = look(
        "instance",
        lambda: paged(
            "describe_instances", "Reservations", Filters=f + [{"Name": "instance-state-name", "Values": LIVE_STATES}]
        ),
    )
    instances = [i for reservation in reservations for i in reservation["Instances"]]
    # A box of several nodes names each instance's node (tags/TAG_NODE).
    per_box = Counter(tag_value(r, TAG_NAME) for r in instances)

    def instance_detail(r):
        several = per_box[tag_value(r, TAG_NAME)] > 1 or (tag_value(r, TAG_NODE) or "0") != "0"
        return r["InstanceType"] + (f" node {tag_value(r, TAG_NODE) or 0}" if several else "")

    add("instance", instances, "InstanceId", lambda r: r["State"]["Name"], instance_detail)
    templates = look("launch-template", lambda: paged("describe_launch_templates", "LaunchTemplates", Filters=f))
    add("launch-template", templates, "LaunchTemplateId", detail=lambda r: r.get("LaunchTemplateName", ""))
    groups = look("placement-group", lambda: ec2.describe_placement_groups(Filters=f)["PlacementGroups"])
    groups = [g for g in groups if g.get("State") in placement.LIVE_STATES]
    add("placement-group", groups, "GroupName", lambda r: r.get("State", ""), lambda r: r.get("Strategy", ""))
    add(
        "address",
        look("address", lambda: ec2.describe_addresses(Filters=f)["Addresses"]),
        "AllocationId",
        detail=lambda r: r.get("PublicIp", ""),
    )
    volumes = look("volume", lambda: paged("describe_volumes", "Volumes", Filters=f))
    add("volume", volumes, "VolumeId", lambda r: r.get("State", ""), lambda r: f"{r.get('Size', '?')} GiB")
    add(
        "security-group",
        look("security-group", lambda: ec2.describe_security_groups(Filters=f)["SecurityGroups"]),
        "GroupId",
    )
    add(
        "subnet",
        look("subnet", lambda: ec2.describe_subnets(Filters=f)["Subnets"]),
        "SubnetId",
        detail=lambda r: r.get("AvailabilityZone", ""),
    )
    add("route-table", look("route-table", lambda: ec2.describe_route_tables(Filters=f)["RouteTables"]), "RouteTableId")
    add(
        "internet-gateway",
        look("internet-gateway", lambda: ec2.describe_internet_gateways(Filters=f)["InternetGateways"]),
        "InternetGatewayId",
    )
    add("vpc", look("vpc", lambda: ec2.describe_vpcs(Filters=f)["Vpcs"]), "VpcId")
    add("key-pair", look("key-pair", lambda: ec2.describe_key_pairs(Filters=f)["KeyPairs"]), "KeyName")
    images = look("image", lambda: ec2.describe_images(Owners=["self"], Filters=f)["Images"])
    images = [i for i in images if i.get("State") != "deregistered"]
    add("image", images, "ImageId", lambda r: r.get("State", ""), lambda r: r.get("Name", ""))
    snapshots = look("snapshot", lambda: ec2.describe_snapshots(OwnerIds=["self"], Filters=f)["Snapshots"])
    add("snapshot", snapshots, "SnapshotId", lambda r: r.get("State", ""), lambda r: f"{r.get('VolumeSize', '?')} GiB")
    return Survey(out, unchecked)
