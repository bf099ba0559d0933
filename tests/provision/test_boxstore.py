"""Where a --recover box's runs outlive its instance (issue 25, items 2 and 5, the AWS side),
against moto in process: trainbox's bucket per account and region, the box's prefix in it,
an instance role whose policy reaches that prefix only, its instance profile in the group's
launch template; `down` deletes role, profile, policy and prefix (`--keep-checkpoints`
keeps the prefix), and a box without --recover never touches IAM."""

from __future__ import annotations

import json

import pytest
from pvkit import WrappedCloud, aws, ec2, launch, moto_ami, moto_module, name  # noqa: F401

from common import state
from provision import boxstore, lifecycle, recover
from provision.tags import TAG_MANAGED, TAG_NAME


@pytest.fixture
def iam(aws):
    return aws.client("iam")


@pytest.fixture
def s3(aws):
    return aws.client("s3")


BUCKET = "trainbox-123456789012-us-east-1"  # moto's account


def role_gone(iam, name) -> bool:
    try:
        iam.get_role(RoleName=boxstore.role_name(name))
    except iam.exceptions.NoSuchEntityException:
        return True
    return False


def profile_gone(iam, name) -> bool:
    try:
        iam.get_instance_profile(InstanceProfileName=boxstore.role_name(name))
    except iam.exceptions.NoSuchEntityException:
        return True
    return False


def keys_under(s3, prefix) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def test_up_recover_makes_the_bucket_the_role_and_its_profile_in_the_template(aws, ec2, iam, s3, launch, name):
    box, _ = launch(spot=True, recover=True)
    store = box.extra["store"]
    assert store == {"bucket": BUCKET, "prefix": f"boxes/{name}/", "role": f"trainbox-{name}"}
    # The bucket: trainbox's, private.
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    assert tags[TAG_MANAGED] == "true"
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    # The role: assumed by EC2 only, tagged for the box.
    role = iam.get_role(RoleName=store["role"])["Role"]
    assert role["Path"] == "/trainbox/"
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert {t["Key"]: t["Value"] for t in role["Tags"]}[TAG_NAME] == name
    # Its profile is what the group's instances get.
    profile = iam.get_instance_profile(InstanceProfileName=store["role"])["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [store["role"]]
    template = recover.find_template(ec2, name)
    (version,) = ec2.describe_launch_template_versions(LaunchTemplateId=template)["LaunchTemplateVersions"]
    assert version["LaunchTemplateData"]["IamInstanceProfile"]["Arn"] == profile["Arn"]


def object_resources(doc: dict) -> set[str]:
    out = set()
    for st in doc["Statement"]:
        res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        out |= set(res)
    return out


def test_the_role_s_policy_reaches_the_box_s_prefix_only(iam, launch, name):
    launch(spot=True, recover=True)
    launch(spot=True, recover=True, name=name + "b")
    doc = iam.get_role_policy(RoleName=boxstore.role_name(name), PolicyName=boxstore.POLICY)["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    assert all(st["Effect"] == "Allow" for st in doc["Statement"])
    actions = {
        a for st in doc["Statement"] for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    }
    assert actions == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "autoscaling:UpdateAutoScalingGroup",  # its own group's size only: the guard's release
    }
    account = BUCKET.split("-")[1]
    assert object_resources(doc) == {
        f"arn:aws:s3:::{BUCKET}/boxes/{name}/*",
        f"arn:aws:s3:::{BUCKET}",
        f"arn:aws:autoscaling:us-east-1:{account}:autoScalingGroup:*:autoScalingGroupName/trainbox-{name}",
    }
    (listing,) = [st for st in doc["Statement"] if st["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"boxes/{name}/*"]}}
    other = iam.get_role_policy(RoleName=boxstore.role_name(name + "b"), PolicyName=boxstore.POLICY)
    assert f"boxes/{name}/" not in json.dumps(other["PolicyDocument"])


@pytest.mark.parametrize("with_state", [True, False])
def test_down_deletes_role_profile_policy_and_the_prefix_only(aws, iam, s3, launch, name, with_state):
    launch(spot=True, recover=True)
    for key in ("runs/r1/out/backup/ckpt", "runs/r1/run.json"):
        s3.put_object(Bucket=BUCKET, Key=f"boxes/{name}/{key}", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key=f"boxes/{name}x/runs/keep", Body=b"another box's")
    if not with_state:
        state.forget(name)
    said: list[str] = []
    lifecycle.destroy(aws, name, said.append)
    assert role_gone(iam, name) and profile_gone(iam, name)
    assert keys_under(s3, f"boxes/{name}/") == []
    assert keys_under(s3, f"boxes/{name}x/") == [f"boxes/{name}x/runs/keep"]
    assert any("role" in s for s in said) and any(f"boxes/{name}/" in s for s in said)


def test_down_keep_checkpoints_keeps_the_prefix(aws, iam, s3, launch, name):
    launch(spot=True, recover=True)
    s3.put_object(Bucket=BUCKET, Key=f"boxes/{name}/runs/r1/ckpt", Body=b"x")
    lifecycle.destroy(aws, name, lambda s: None, keep_checkpoints=True)
    assert role_gone(iam, name) and profile_gone(iam, name)
    assert keys_under(s3, f"boxes/{name}/") == [f"boxes/{name}/runs/r1/ckpt"]


def test_a_box_without_recover_never_touches_iam_or_s3(aws, launch, name):
    def no_iam(service, client):
        if service in ("iam", "s3"):
            raise AssertionError(f"a plain box used {service}")
        return client

    cloud = WrappedCloud("us-east-1", wrap=no_iam)
    launch(cloud=cloud, spot=True)
    lifecycle.destroy(cloud, name, lambda s: None)
