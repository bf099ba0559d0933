"""The "IAM permissions" list of docs/aws.md names every AWS action the code calls
(found in the code itself, so the list cannot go stale), and the access-denied
hints point at that heading."""

from __future__ import annotations

import ast
import re

import botocore.session
from botocore import xform_name
from botocore.exceptions import DataNotFoundError

from common.aws import _FIXES, IAM_HINT
from testkit import REPO

# Where IAM's action is not named like the API operation.
IAM_ACTION = {
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:DeleteObjects": "s3:DeleteObject",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
}
# Called only against the sandbox's moto, never on AWS: the container box reads back the
# user-data its instance was launched with (sandbox/container.py user_data_of).
# The sandbox plays AWS's health check on a --recover box's group (sandbox/group.py).
SANDBOX_ONLY = {"ec2:DescribeInstanceAttribute", "autoscaling:TerminateInstanceInAutoScalingGroup"}


def aws_actions() -> set[str]:
    """Every "service:Operation" cli/, provision/, remote/ and common/ call: client methods, and
    the operations named in strings (paginators, waiters, presigned URLs)."""
    names, services = set(), set()
    for f in (p for package in ("cli", "provision", "remote", "common") for p in REPO.glob(f"{package}/*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                names.add(node.func.attr)
                if node.func.attr == "client" and node.args and isinstance(node.args[0], ast.Constant):
                    services.add(node.args[0].value)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
    session = botocore.session.get_session()
    found = set()
    for service in services:
        model = session.get_service_model(service)
        ops = {xform_name(o): o for o in model.operation_names}
        operations = {ops[n] for n in names if n in ops}
        try:
            waiters = session.get_waiter_model(service)
            operations |= {waiters.get_waiter(w).operation for w in waiters.waiter_names if xform_name(w) in names}
        except DataNotFoundError:
            pass  # the service has no waiters
        found |= {f"{model.signing_name}:{op}" for op in operations}
    return {IAM_ACTION.get(a, a) for a in found}


def docs_section(title: str) -> str:
    text = (REPO / "docs" / "aws.md").read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^#|\Z)", text, re.S | re.M)
    assert m, f"docs/aws.md has no '## {title}' section"
    return m.group(1)


def test_the_extractor_finds_calls_paginators_waiters_and_presigned_urls():
    found = aws_actions()
    assert {
        "ec2:RunInstances",
        "ec2:DescribeVpcs",
        "ec2:DescribeInstanceTypeOfferings",
        "s3:GetObject",
        "s3:ListBucket",
        "servicequotas:GetServiceQuota",
        "ssm:GetParameter",
        "sts:GetCallerIdentity",
    } <= found


def test_every_aws_action_the_code_calls_is_in_the_docs():
    listed = set(re.findall(r"`([a-z0-9-]+:[A-Za-z0-9]+)`", docs_section("IAM permissions")))
    missing = sorted(aws_actions() - listed - SANDBOX_ONLY)
    assert missing == [], f"add these to docs/aws.md's IAM permissions: {missing}"


def test_access_denied_hints_name_the_docs_heading():
    assert IAM_HINT == '"IAM permissions" in docs/aws.md'
    docs_section("IAM permissions")
    for code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        assert IAM_HINT in _FIXES[code][1]
