"""Where a --recover box's runs outlive its instance (issue 25, items 2 and 5: the AWS side).

- trainbox's bucket per account and region, ``trainbox-<account>-<region>``, private (all
  public access blocked), tagged ``trainbox:managed=true``; it outlives every box (other
  boxes' prefixes live in it);
- the box's prefix in it, ``boxes/<box>/``: its runs' checkpoints and what a new instance
  needs to resume them (written by the box itself, in the next stages);
- an instance role ``trainbox-<box>`` (path /trainbox/, tagged as the box) that only EC2 may
  assume, whose one inline policy reaches that prefix and nothing else, and its instance
  profile, which the group's launch template names: every instance the group launches
  reaches the prefix with the role's short-lived credentials from its IMDS, so the laptop's
  credentials never reach a box and no presigned URL is needed.

``destroy`` deletes the role (its policy, its profile) and the prefix (unless asked to keep
the checkpoints), then verifies each is gone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from common.aws import Cloud, error_code
from common.errors import CloudError, name_flag

from .tags import TAG_MANAGED, TAG_NAME, tag_value, tags

ROLE_PATH = "/trainbox/"
POLICY = "trainbox-box-prefix"


def bucket_name(account: str, region: str) -> str:
    return f"trainbox-{account}-{region}"


def prefix(name: str) -> str:
    return f"boxes/{name}/"


def role_name(name: str) -> str:
    return f"trainbox-{name}"


@dataclass(frozen=True)
class Store:
    bucket: str
    prefix: str
    role: str
    profile_arn: str

    def as_state(self) -> dict:
        return {"bucket": self.bucket, "prefix": self.prefix, "role": self.role}


def trust_document() -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }


def group_arn(name: str, account: str = "*", region: str = "*") -> str:
    """The ARN of the box's Auto Scaling group (provision/recover.py group_name), any group id."""
    return f"arn:aws:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/trainbox-{name}"


def policy_document(bucket: str, name: str, account: str = "*", region: str = "*") -> dict:
    """The box's objects (read, write, delete), the listing of its prefix, and setting its own
    group's size (the guard sets it to 0 before it shuts an idle box down, box/release.py):
    nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": f"arn:aws:s3:::{bucket}/{prefix(name)}*",
            },
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix(name)}*"]}},
            },
            {
                "Effect": "Allow",
                "Action": "autoscaling:UpdateAutoScalingGroup",
                "Resource": group_arn(name, account, region),
                # Never above one instance: code on the box cannot grow the bill through it.
                "Condition": {"NumericLessThanEqualsIfExists": {"autoscaling:MaxSize": "1"}},
            },
        ],
    }


def _missing(e: Exception) -> bool:
    return error_code(e) in ("NoSuchEntity", "404", "NoSuchBucket", "NotFound")


def ensure_bucket(cloud: Cloud, account: str) -> str:
    from botocore.exceptions import ClientError

    s3 = cloud.client("s3")
    bucket = bucket_name(account, cloud.region)
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
        return bucket
    except ClientError as e:
        if not _missing(e):
            raise  # 403: the name is another account's (aws_errors names it)
    where = {} if cloud.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": cloud.region}}
    s3.create_bucket(Bucket=bucket, **where)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": TAG_MANAGED, "Value": "true"}]})
    return bucket


def ensure(cloud: Cloud, name: str, say: Callable[[str], None]) -> Store:
    """The box's bucket, prefix, role with its policy, and instance profile (each made once)."""
    from botocore.exceptions import ClientError

    account = cloud.client("sts").get_caller_identity()["Account"]
    bucket = ensure_bucket(cloud, account)
    iam = cloud.client("iam")
    role = role_name(name)
    try:
        iam.get_role(RoleName=role)
    except ClientError as e:
        if not _missing(e):
            raise
        iam.create_role(
            Path=ROLE_PATH,
            RoleName=role,
            AssumeRolePolicyDocument=json.dumps(trust_document()),
            Description=f"trainbox box {name}: its instances reach s3://{bucket}/{prefix(name)} only",
            Tags=tags(name),
        )
    # Put every time: the same document, so a hand-widened policy is narrowed again.
    iam.put_role_policy(
        RoleName=role,
        PolicyName=POLICY,
        PolicyDocument=json.dumps(policy_document(bucket, name, account, cloud.region)),
    )
    try:
        profile = iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]
    except ClientError as e:
        if not _missing(e):
            raise
        profile = iam.create_instance_profile(InstanceProfileName=role, Path=ROLE_PATH, Tags=tags(name))[
            "InstanceProfile"
        ]
    if role not in [r["RoleName"] for r in profile.get("Roles", [])]:
        iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
    say(f"checkpoints: s3://{bucket}/{prefix(name)} (instance role {role}: that prefix only)")
    return Store(bucket, prefix(name), role, profile["Arn"])


def _ours(resource: dict, name: str) -> bool:
    return tag_value(resource, TAG_MANAGED) == "true" and tag_value(resource, TAG_NAME) == name


def destroy(cloud: Cloud, name: str, say: Callable[[str], None], keep_prefix: bool = False) -> list[str]:
    """Delete the box's role (its inline policies, its instance profile) and its prefix; verify
    each is gone. A role or profile not tagged for this box is never touched."""
    from botocore.exceptions import ClientError

    iam, s3 = cloud.client("iam"), cloud.client("s3")
    role = role_name(name)
    deleted: list[str] = []
    try:
        profile = iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]
    except ClientError as e:
        if not _missing(e):
            raise
        profile = None
    if profile is not None and _ours(profile, name):
        for r in profile.get("Roles", []):
            iam.remove_role_from_instance_profile(InstanceProfileName=role, RoleName=r["RoleName"])
        iam.delete_instance_profile(InstanceProfileName=role)
        deleted.append(f"instance-profile {role}")
        say(f"deleted instance-profile {role}")
    try:
        found = iam.get_role(RoleName=role)["Role"]
    except ClientError as e:
        if not _missing(e):
            raise
        found = None
    if found is not None and _ours(found, name):
        for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            iam.delete_role_policy(RoleName=role, PolicyName=policy)
        iam.delete_role(RoleName=role)
        deleted.append(f"role {role}")
        say(f"deleted role {role} and its policy")
    account = cloud.client("sts").get_caller_identity()["Account"]
    bucket = bucket_name(account, cloud.region)
    left_keys: list[str] = []
    if not keep_prefix:
        n = _delete_prefix(s3, bucket, prefix(name))
        if n is not None:
            say(f"deleted s3://{bucket}/{prefix(name)} ({n} object(s))")
            deleted.append(f"s3://{bucket}/{prefix(name)}")
            left_keys = _keys(s3, bucket, prefix(name)) or []
    else:
        say(f"kept s3://{bucket}/{prefix(name)} (--keep-checkpoints)")
    left = [d for d in deleted if d == f"role {role}" and not _gone(lambda: iam.get_role(RoleName=role))]
    left += [
        d
        for d in deleted
        if d == f"instance-profile {role}" and not _gone(lambda: iam.get_instance_profile(InstanceProfileName=role))
    ]
    left += [f"s3://{bucket}/{k}" for k in left_keys[:3]]
    if left:
        raise CloudError(
            f"the checkpoint store of box '{name}' is not gone: " + ", ".join(left),
            f"run `python -m provision down{name_flag(name)}` again, or delete them in the console",
        )
    return deleted


def _keys(s3, bucket: str, under: str) -> list[str] | None:
    """Every key under the prefix, or None when there is no such bucket."""
    from botocore.exceptions import ClientError

    keys: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=under):
            keys += [o["Key"] for o in page.get("Contents", [])]
    except ClientError as e:
        if _missing(e):
            return None
        raise
    return keys


def _delete_prefix(s3, bucket: str, under: str) -> int | None:
    keys = _keys(s3, bucket, under)
    if keys is None:
        return None
    for i in range(0, len(keys), 1000):  # DeleteObjects takes 1000 keys at a time
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True})
    return len(keys)


def _gone(get: Callable[[], object]) -> bool:
    """True when IAM answers get() with "no such entity"; any other error is raised."""
    from botocore.exceptions import ClientError

    try:
        get()
    except ClientError as e:
        if _missing(e):
            return True
        raise
    return False
