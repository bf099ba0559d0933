"""Checks made before ``up`` creates anything, each failing with one line and the fix."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from common.aws import Cloud, aws_errors, error_code
from common.errors import CloudError, UsageError

log = logging.getLogger(__name__)

# Service Quotas codes of the EC2 vCPU quotas, by instance family letter.
ON_DEMAND_QUOTAS = {
    "g": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "vt": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "p": ("L-417A185B", "Running On-Demand P instances"),
}
SPOT_QUOTAS = {
    "g": ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    "vt": ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    "p": ("L-7212CCBC", "All P Spot Instance Requests"),
}


@dataclass(frozen=True)
class QuotaCheck:
    name: str
    limit: float | None  # None: unknown (the account or the API would not say)
    needed: int

    @property
    def ok(self) -> bool:
        return self.limit is None or self.limit >= self.needed


def check_credentials(cloud: Cloud) -> str:
    with aws_errors("check the credentials"):
        return cloud.client("sts").get_caller_identity()["Arn"]


def check_region(cloud: Cloud) -> None:
    with aws_errors("list regions"):
        regions = {r["RegionName"] for r in cloud.client("ec2").describe_regions(AllRegions=True)["Regions"]}
    if cloud.region not in regions:
        raise UsageError(f"unknown AWS region {cloud.region!r}", "pass --region, e.g. us-east-1")


def offered_zones(ec2, instance_type: str) -> list[str]:
    offers: list[str] = []
    for page in ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [instance_type]}]
    ):
        offers.extend(o["Location"] for o in page["InstanceTypeOfferings"])
    return sorted(offers)


GPU_FAMILIES = ("g4dn", "g5", "g6", "g6e", "g6f", "gr6", "p3", "p4d", "p4de", "p5", "p5e", "p5en", "p6")


def offered_gpu_types(ec2) -> list[str]:
    """The GPU instance types offered in the client's region.

    All offerings are listed and filtered here: wildcards in the
    ``instance-type`` filter are not understood everywhere (moto ignores them).
    """
    types: set[str] = set()
    for page in ec2.get_paginator("describe_instance_type_offerings").paginate(LocationType="region"):
        types.update(
            o["InstanceType"] for o in page["InstanceTypeOfferings"] if o["InstanceType"].split(".")[0] in GPU_FAMILIES
        )
    return sorted(types, key=lambda t: (t.split(".")[0], _size_rank(t)))


def _size_rank(instance_type: str) -> int:
    size = instance_type.split(".", 1)[1] if "." in instance_type else ""
    if size == "metal":
        return 10_000
    digits = size[: -len("xlarge")] if size.endswith("xlarge") else ""
    return int(digits) if digits.isdigit() else (1 if size == "xlarge" else 0)


def check_offered(cloud: Cloud, instance_type: str) -> list[str]:
    ec2 = cloud.client("ec2")
    with aws_errors("list instance type offerings"):
        zones = offered_zones(ec2, instance_type)
        if zones:
            return zones
        gpus = offered_gpu_types(ec2)
    # The smallest size of each GPU family: the useful choices, on one line.
    smallest = list({t.split(".")[0]: t for t in reversed(gpus)}.values())[::-1]
    hint = (
        "offered GPU types here: " + ", ".join(smallest) + " (pass --instance-type)" if gpus else "try another --region"
    )
    raise UsageError(f"{instance_type} is not offered in {cloud.region}", hint)


def vcpus_of(ec2, instance_type: str) -> int:
    with aws_errors("describe the instance type"):
        info = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    return int(info[0]["VCpuInfo"]["DefaultVCpus"]) if info else 0


def quota_family(instance_type: str) -> str:
    """The letters that pick the vCPU quota: g4dn.xlarge -> g, p3.2xlarge -> p, vt1.3xlarge -> vt."""
    letters = re.match(r"[a-z]*", instance_type).group()  # type: ignore[union-attr]  # [a-z]* always matches
    return "vt" if letters == "vt" else letters[:1]


def quota_for(cloud: Cloud, instance_type: str, spot: bool, vcpus: int) -> QuotaCheck | None:
    """The family's vCPU quota against what the type needs; None if no quota applies."""
    from botocore.exceptions import ClientError

    fam = quota_family(instance_type)
    table = SPOT_QUOTAS if spot else ON_DEMAND_QUOTAS
    if fam not in table:
        return None
    code, title = table[fam]
    try:
        value = cloud.client("service-quotas").get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
    except ClientError as e:
        if error_code(e) in ("NoSuchResourceException", "AccessDeniedException", "ServiceException"):
            return QuotaCheck(title, None, vcpus)
        raise
    return QuotaCheck(title, float(value), vcpus)


def check_quota(cloud: Cloud, instance_type: str, spot: bool, count: int = 1) -> QuotaCheck | None:
    """The family's vCPU quota against ``count`` instances of the type (a box's nodes)."""
    with aws_errors("read the vCPU quota"):
        check = quota_for(cloud, instance_type, spot, count * vcpus_of(cloud.client("ec2"), instance_type))
    if check and not check.ok:
        what = instance_type + " needs" if count == 1 else f"{count} nodes of {instance_type} need"
        raise CloudError(
            f"the '{check.name}' quota is {check.limit:g} vCPUs; {what} {check.needed}",
            "request an increase in the Service Quotas console (it takes hours to days: ask early)",
        )
    return check
