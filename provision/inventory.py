"""Everything trainbox has in a region, found by tags alone (orphans too)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from . import placement
from .instance import LIVE_STATES
from .tags import TAG_NAME, TAG_NODE, name_filters, tag_value

SPOT_LIVE_STATES = ["open", "active", "disabled"]  # the others can no longer launch anything

# Dependency order: what must go first when tearing down. A persistent spot
# request relaunches its instance when that is terminated: it goes first.
# A placement group can go only once its instances have.
# Images (provision/images.py) come last: they outlive the box, and `down`
# removes them only when asked (--images).
KINDS = ["spot-request", "instance", "placement-group", "address", "volume", "security-group", "subnet", "route-table", "internet-gateway", "vpc", "key-pair", "image", "snapshot"]
IMAGE_KINDS = ("image", "snapshot")


@dataclass(frozen=True)
class Resource:
    kind: str
    id: str
    box: str
    region: str
    state: str = ""
    detail: str = ""


def tagged_resources(ec2, region: str, name: str | None = None) -> list[Resource]:
    """Every trainbox-tagged resource that can bill or block (of one box, if named)."""
    f = name_filters(name)
    out: list[Resource] = []

    def add(kind, items, id_key, state=lambda r: "", detail=lambda r: ""):
        for r in items:
            out.append(Resource(kind, r[id_key], tag_value(r, TAG_NAME) or "?", region, state(r), detail(r)))

    spot = ec2.describe_spot_instance_requests(Filters=f + [{"Name": "state", "Values": SPOT_LIVE_STATES}])
    add("spot-request", spot["SpotInstanceRequests"], "SpotInstanceRequestId", lambda r: r["State"], lambda r: r.get("Type", ""))
    instances = []
    for page in ec2.get_paginator("describe_instances").paginate(
        Filters=f + [{"Name": "instance-state-name", "Values": LIVE_STATES}]
    ):
        for reservation in page["Reservations"]:
            instances.extend(reservation["Instances"])
    # A box of several nodes names each instance's node (tags/TAG_NODE).
    per_box = Counter(tag_value(r, TAG_NAME) for r in instances)

    def instance_detail(r):
        several = per_box[tag_value(r, TAG_NAME)] > 1 or (tag_value(r, TAG_NODE) or "0") != "0"
        return r["InstanceType"] + (f" node {tag_value(r, TAG_NODE) or 0}" if several else "")

    add("instance", instances, "InstanceId", lambda r: r["State"]["Name"], instance_detail)
    groups = [g for g in ec2.describe_placement_groups(Filters=f)["PlacementGroups"] if g.get("State") in placement.LIVE_STATES]
    add("placement-group", groups, "GroupName", lambda r: r.get("State", ""), lambda r: r.get("Strategy", ""))
    add("address", ec2.describe_addresses(Filters=f)["Addresses"], "AllocationId", detail=lambda r: r.get("PublicIp", ""))
    volumes = []
    for page in ec2.get_paginator("describe_volumes").paginate(Filters=f):
        volumes.extend(page["Volumes"])
    add("volume", volumes, "VolumeId", lambda r: r.get("State", ""), lambda r: f"{r.get('Size', '?')} GiB")
    add("security-group", ec2.describe_security_groups(Filters=f)["SecurityGroups"], "GroupId")
    add("subnet", ec2.describe_subnets(Filters=f)["Subnets"], "SubnetId", detail=lambda r: r.get("AvailabilityZone", ""))
    add("route-table", ec2.describe_route_tables(Filters=f)["RouteTables"], "RouteTableId")
    add("internet-gateway", ec2.describe_internet_gateways(Filters=f)["InternetGateways"], "InternetGatewayId")
    add("vpc", ec2.describe_vpcs(Filters=f)["Vpcs"], "VpcId")
    add("key-pair", ec2.describe_key_pairs(Filters=f)["KeyPairs"], "KeyName")
    images = [i for i in ec2.describe_images(Owners=["self"], Filters=f)["Images"] if i.get("State") != "deregistered"]
    add("image", images, "ImageId", lambda r: r.get("State", ""), lambda r: r.get("Name", ""))
    snapshots = ec2.describe_snapshots(OwnerIds=["self"], Filters=f)["Snapshots"]
    add("snapshot", snapshots, "SnapshotId", lambda r: r.get("State", ""), lambda r: f"{r.get('VolumeSize', '?')} GiB")
    return out
