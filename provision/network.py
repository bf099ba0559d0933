"""The box's own network: a tagged VPC, subnet, internet gateway, route
table and a security group that admits tcp/22 from one CIDR only (and, for
a box of several nodes, all TCP between its nodes).

Each ``ensure_*`` finds the tagged resource first and creates it only when
missing, so running ``up`` twice never duplicates the network (the course's
setup_p2.sh did). Everything is tagged at creation, so a failure half-way
leaves only tagged things that ``down`` removes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tags import name_filters, tag_spec

VPC_CIDR = "10.77.0.0/16"


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnet_id: str
    security_group_id: str
    zone: str


def _first(items: list[dict]) -> dict | None:
    return items[0] if items else None


def ensure_vpc(ec2, name: str) -> str:
    vpc = _first(ec2.describe_vpcs(Filters=name_filters(name))["Vpcs"])
    if vpc:
        return vpc["VpcId"]
    vpc_id = ec2.create_vpc(CidrBlock=VPC_CIDR, TagSpecifications=tag_spec("vpc", name))["Vpc"]["VpcId"]
    ec2.get_waiter("vpc_available").wait(VpcIds=[vpc_id])
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    return vpc_id


def ensure_internet_gateway(ec2, name: str, vpc_id: str) -> str:
    igw = _first(ec2.describe_internet_gateways(Filters=name_filters(name))["InternetGateways"])
    if igw is None:
        igw = ec2.create_internet_gateway(TagSpecifications=tag_spec("internet-gateway", name))["InternetGateway"]
    if not any(a.get("VpcId") == vpc_id for a in igw.get("Attachments", [])):
        ec2.attach_internet_gateway(InternetGatewayId=igw["InternetGatewayId"], VpcId=vpc_id)
    return igw["InternetGatewayId"]


def ensure_route_table(ec2, name: str, vpc_id: str, igw_id: str) -> str:
    rtb = _first(ec2.describe_route_tables(Filters=name_filters(name))["RouteTables"])
    if rtb is None:
        rtb = ec2.create_route_table(VpcId=vpc_id, TagSpecifications=tag_spec("route-table", name))["RouteTable"]
    if not any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in rtb.get("Routes", [])):
        ec2.create_route(RouteTableId=rtb["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw_id)
    return rtb["RouteTableId"]


def ensure_subnet(ec2, name: str, vpc_id: str, zone: str, route_table_id: str) -> str:
    subnets = ec2.describe_subnets(Filters=name_filters(name))["Subnets"]
    subnet = next((s for s in subnets if s["AvailabilityZone"] == zone), None)
    if subnet is None:
        used = {s["CidrBlock"] for s in subnets}
        cidr = next(f"10.77.{i}.0/24" for i in range(256) if f"10.77.{i}.0/24" not in used)
        subnet = ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=zone, TagSpecifications=tag_spec("subnet", name)
        )["Subnet"]
        ec2.modify_subnet_attribute(SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": True})
    rtb = ec2.describe_route_tables(RouteTableIds=[route_table_id])["RouteTables"][0]
    if not any(a.get("SubnetId") == subnet["SubnetId"] for a in rtb.get("Associations", [])):
        ec2.associate_route_table(RouteTableId=route_table_id, SubnetId=subnet["SubnetId"])
    return subnet["SubnetId"]


def ssh_rule(cidr: str) -> dict:
    return {
        "IpProtocol": "tcp",
        "FromPort": 22,
        "ToPort": 22,
        "IpRanges": [{"CidrIp": cidr, "Description": "trainbox ssh"}],
    }


def intra_group_rule(sg_id: str) -> dict:
    """All TCP from the group itself: a multi-node box's nodes reach each other, nothing else does."""
    return {
        "IpProtocol": "tcp",
        "FromPort": 0,
        "ToPort": 65535,
        "UserIdGroupPairs": [{"GroupId": sg_id, "Description": "trainbox nodes of this box"}],
    }


def ensure_security_group(ec2, name: str, vpc_id: str, ssh_cidr: str, intra: bool = False) -> str:
    """A group whose ingress is tcp/22 from ssh_cidr and, with ``intra`` (a box
    of several nodes), all TCP from members of the group itself; nothing else.

    An existing group is brought back to exactly those rules (the laptop's
    address may have changed since the last ``up``).
    """
    sg = _first(ec2.describe_security_groups(Filters=name_filters(name))["SecurityGroups"])
    if sg is None:
        sg_id = ec2.create_security_group(
            GroupName=f"trainbox-{name}",
            Description=f"trainbox box {name}: ssh from one address only",
            VpcId=vpc_id,
            TagSpecifications=tag_spec("security-group", name),
        )["GroupId"]
        current: list[dict] = []
    else:
        sg_id = sg["GroupId"]
        current = sg.get("IpPermissions", [])
    wanted = [ssh_rule(ssh_cidr)] + ([intra_group_rule(sg_id)] if intra else [])
    if _rule_set(current) != _rule_set(wanted):
        if current:
            ec2.revoke_security_group_ingress(GroupId=sg_id, IpPermissions=current)
        ec2.authorize_security_group_ingress(GroupId=sg_id, IpPermissions=wanted)
    return sg_id


def _rule_set(rules: list[dict]) -> set[tuple]:
    """The rules as comparable values: protocol, ports and each source, one entry per source."""
    out = set()
    for r in rules:
        head = (r.get("IpProtocol"), r.get("FromPort"), r.get("ToPort"))
        out |= {(*head, "cidr", x["CidrIp"]) for x in r.get("IpRanges", [])}
        out |= {(*head, "cidr6", x["CidrIpv6"]) for x in r.get("Ipv6Ranges", [])}
        out |= {(*head, "group", x["GroupId"]) for x in r.get("UserIdGroupPairs", [])}
        out |= {(*head, "prefix", x["PrefixListId"]) for x in r.get("PrefixListIds", [])}
        if not any(r.get(k) for k in ("IpRanges", "Ipv6Ranges", "UserIdGroupPairs", "PrefixListIds")):
            out.add((*head, "none", ""))
    return out


def ensure_network(ec2, name: str, zone: str, ssh_cidr: str, intra: bool = False) -> Network:
    vpc_id = ensure_vpc(ec2, name)
    igw_id = ensure_internet_gateway(ec2, name, vpc_id)
    rtb_id = ensure_route_table(ec2, name, vpc_id, igw_id)
    subnet_id = ensure_subnet(ec2, name, vpc_id, zone, rtb_id)
    sg_id = ensure_security_group(ec2, name, vpc_id, ssh_cidr, intra)
    return Network(vpc_id=vpc_id, subnet_id=subnet_id, security_group_id=sg_id, zone=zone)
