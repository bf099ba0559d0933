"""Delete every tagged resource of one box, in dependency order, verified.

Works from tags alone, so a lost state file never orphans anything. A
resource that is already gone (NotFound) counts as deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from common.aws import error_code
from common.errors import CloudError, name_flag

from . import recover
from .inventory import IMAGE_KINDS, KINDS, Resource, survey

log = logging.getLogger(__name__)


def _gone(exc: Exception) -> bool:
    code = error_code(exc)
    return (
        code.endswith(".NotFound")
        or code.endswith("NotFound")
        or code in ("InvalidKeyPair.NotFound", "InvalidPlacementGroup.Unknown")
    )


def _delete_instances(ec2, resources: list[Resource], poll_s: float) -> None:
    ids = [r.id for r in resources]
    if not ids:
        return
    ec2.terminate_instances(InstanceIds=ids)
    # Security groups and the network can only go once the instances have.
    ec2.get_waiter("instance_terminated").wait(
        InstanceIds=ids, WaiterConfig={"Delay": poll_s, "MaxAttempts": int(600 / poll_s)}
    )


def _delete_address(ec2, r: Resource) -> None:
    addr = ec2.describe_addresses(AllocationIds=[r.id])["Addresses"][0]
    if addr.get("AssociationId"):
        ec2.disassociate_address(AssociationId=addr["AssociationId"])
    ec2.release_address(AllocationId=r.id)


def _delete_route_table(ec2, r: Resource) -> None:
    rtb = ec2.describe_route_tables(RouteTableIds=[r.id])["RouteTables"][0]
    for assoc in rtb.get("Associations", []):
        if not assoc.get("Main"):
            ec2.disassociate_route_table(AssociationId=assoc["RouteTableAssociationId"])
    ec2.delete_route_table(RouteTableId=r.id)


def _delete_internet_gateway(ec2, r: Resource) -> None:
    igw = ec2.describe_internet_gateways(InternetGatewayIds=[r.id])["InternetGateways"][0]
    for att in igw.get("Attachments", []):
        ec2.detach_internet_gateway(InternetGatewayId=r.id, VpcId=att["VpcId"])
    ec2.delete_internet_gateway(InternetGatewayId=r.id)


_DELETERS: dict[str, Callable] = {
    # Cancelling does not terminate the instance: the instance step does.
    "spot-request": lambda ec2, r: ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=[r.id]),
    "launch-template": lambda ec2, r: ec2.delete_launch_template(LaunchTemplateId=r.id),
    "placement-group": lambda ec2, r: ec2.delete_placement_group(GroupName=r.id),
    "address": _delete_address,
    "volume": lambda ec2, r: ec2.delete_volume(VolumeId=r.id),
    "security-group": lambda ec2, r: ec2.delete_security_group(GroupId=r.id),
    "subnet": lambda ec2, r: ec2.delete_subnet(SubnetId=r.id),
    "route-table": _delete_route_table,
    "internet-gateway": _delete_internet_gateway,
    "vpc": lambda ec2, r: ec2.delete_vpc(VpcId=r.id),
    "key-pair": lambda ec2, r: ec2.delete_key_pair(KeyName=r.id),
}


def _why(e: Exception) -> str:
    code = error_code(e)
    return code or type(e).__name__


def destroy(
    ec2,
    region: str,
    name: str,
    report: Callable[[str], None] = lambda s: None,
    poll_s: float = 5,
    autoscaling=None,
) -> list[Resource]:
    """Delete everything tagged for box ``name``; return what was deleted.

    Its images and their snapshots are not the box's to delete: they stay
    (provision/images.py removes them). A kind whose Describe call keeps
    failing (after botocore's retries) does not stop the others: every kind
    that can be found is deleted, and then a CloudError names what could not
    be checked or deleted and what is left. ``autoscaling``: the region's Auto Scaling
    client, so a --recover box's group is found (by its tags) and deleted first.
    """
    from botocore.exceptions import BotoCoreError, ClientError, WaiterError

    found = survey(ec2, region, name, autoscaling)
    resources = [r for r in found.resources if r.kind not in IMAGE_KINDS]
    by_kind = {k: [r for r in resources if r.kind == k] for k in KINDS}
    failed: list[str] = []
    deleted: list[Resource] = []
    for kind in [k for k in KINDS if k not in IMAGE_KINDS]:
        if kind == "instance":
            if by_kind["instance"]:
                report(f"terminating {', '.join(r.id for r in by_kind['instance'])} (waits until terminated)")
                try:
                    _delete_instances(ec2, by_kind["instance"], poll_s)
                    deleted += by_kind["instance"]
                except (ClientError, BotoCoreError, WaiterError) as e:
                    if not _gone(e):
                        failed.append(f"terminate {', '.join(r.id for r in by_kind['instance'])} ({_why(e)})")
            continue
        if kind == "auto-scaling-group":
            for r in by_kind[kind]:
                report(f"deleting group {r.id} with its instances (waits until it is gone)")
                try:
                    recover.delete_scaling_group(autoscaling, r.id, poll_s)
                    deleted.append(r)
                except (ClientError, BotoCoreError, CloudError) as e:
                    failed.append(f"delete group {r.id} ({_why(e) if not isinstance(e, CloudError) else e.what})")
            continue
        for r in by_kind[kind]:
            if kind == "volume" and r.state == "deleted":
                continue
            try:
                _DELETERS[kind](ec2, r)
                report(f"{'cancelled' if kind == 'spot-request' else 'deleted'} {kind} {r.id}")
                deleted.append(r)
            except (ClientError, BotoCoreError) as e:
                if not _gone(e):
                    failed.append(f"delete {kind} {r.id} ({_why(e)})")
    after = survey(ec2, region, name, autoscaling)
    left = [
        r
        for r in after.resources
        if not (r.kind == "instance" and r.state == "terminated") and r.kind not in IMAGE_KINDS
    ]
    unchecked = {k: e for k, e in {**found.unchecked, **after.unchecked}.items() if k not in IMAGE_KINDS}
    problems = []
    if unchecked:
        problems.append("could not check " + ", ".join(f"{k}s ({_why(e)})" for k, e in unchecked.items()))
    if failed:
        problems.append("could not " + "; ".join(failed))
    if left:
        problems.append("left behind: " + ", ".join(f"{r.kind} {r.id}" for r in left))
    if problems:
        raise CloudError(
            f"teardown of box '{name}' is not complete ({len(deleted)} deleted): " + "; ".join(problems),
            f"run `python -m provision down{name_flag(name)}` again, or delete them in the console",
        )
    return resources
