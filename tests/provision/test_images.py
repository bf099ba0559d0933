"""trainbox images against moto in process: bake one from a box, list it with its
size and cost, the next `up` boots it, a pins change does not, `ls` shows it
as billable, `down` keeps it (unless --images), `image rm` leaves nothing.

The clean-up over SSH is tested on a real sshd in tests/box/test_box_image.py,
the whole flow in the sandbox there too."""

from __future__ import annotations

import pytest
from pvkit import opts

from common.aws import Cloud
from provision import ami as amis
from provision import images, instance, teardown
from provision.inventory import tagged_resources
from provision.up import up
from remote import bake as box_clean
from remote import setup


@pytest.fixture
def aws(monkeypatch, tmp_path):
    """A fresh moto per test: images are found region-wide, so tests must not see each other's."""
    from moto import mock_aws

    monkeypatch.chdir(tmp_path)
    with mock_aws():
        yield Cloud("us-east-1")


@pytest.fixture
def ec2(aws):
    return aws.client("ec2")


@pytest.fixture
def dlami(ec2) -> str:
    found = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["Deep Learning AMI Ubuntu*"]}])[
        "Images"
    ]
    return found[0]["ImageId"]


def launch(aws, dlami, name, **kw):
    said: list[str] = []
    box = up(
        aws,
        opts(name=name, env_spec=setup.SetupOptions.from_env().spec_id(), **kw),
        said.append,
        latest_ami=lambda: dlami,
    )
    return box, said


def bake(aws, dlami, name="src", spec=None):
    box, _ = launch(aws, dlami, name)
    ec2 = aws.client("ec2")
    instance.stop(ec2, box.instance_id)
    said: list[str] = []
    spec = spec or images.spec_tag(setup.SetupOptions.from_env().spec_id(), "gpu")
    image_id = images.bake(
        ec2, box.instance_id, name, f"trainbox-{name}-x", spec, images.base_of(ec2, box.ami), said.append, poll_s=0
    )
    return image_id, said


def snapshots_of(ec2, image_id):
    return ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": f"tag:{images.TAG_IMAGE}", "Values": [image_id]}]
    )["Snapshots"]


def test_bake_tags_the_image_and_its_snapshots_and_ls_shows_size_and_cost(aws, dlami):
    image_id, said = bake(aws, dlami)
    assert any(f"image {image_id} is available" in s for s in said), said
    ec2 = aws.client("ec2")
    [img] = images.list_images(ec2)
    spec = images.spec_tag(setup.SetupOptions.from_env().spec_id(), "gpu")
    assert (img.id, img.box, img.spec, img.base_ami, img.state) == (image_id, "src", spec, dlami, "available")
    assert img.base_name.startswith("Deep Learning AMI") and img.login_user == "ubuntu"
    snaps = snapshots_of(ec2, image_id)
    assert [s["SnapshotId"] for s in snaps] == [s.id for s in img.snapshots] and snaps
    tags = {t["Key"]: t["Value"] for t in snaps[0]["Tags"]}
    assert tags["trainbox:managed"] == "true" and tags["trainbox:name"] == "src" and tags[images.TAG_SPEC] == spec
    assert tags[images.TAG_BASE] == dlami
    # moto reports no written-blocks size: the volume's size, said to be an upper bound.
    assert img.size_gb == sum(s["VolumeSize"] for s in snaps) and not img.size_exact
    assert img.monthly_cost(0.05) == pytest.approx(img.size_gb * 0.05)
    kinds = {(r.kind, r.id) for r in tagged_resources(ec2, "us-east-1")}
    assert ("image", image_id) in kinds and ("snapshot", snaps[0]["SnapshotId"]) in kinds, (
        "`provision ls` lists them as billable"
    )


def test_the_next_up_boots_the_image_and_a_pins_change_does_not(aws, dlami, monkeypatch):
    image_id, _ = bake(aws, dlami)
    ec2 = aws.client("ec2")
    box, said = launch(aws, dlami, "next")
    assert instance.get(ec2, box.instance_id).image_id == image_id and box.ami == image_id
    assert any(f"AMI {image_id}" in s and "nothing to install" in s for s in said), said

    monkeypatch.setenv("TRAINBOX_JUPYTER", "0")  # other pins: another spec
    box, said = launch(aws, dlami, "pins")
    assert instance.get(ec2, box.instance_id).image_id == dlami
    assert any(f"AMI {dlami}" in s and "none of this environment" in s for s in said), said

    monkeypatch.delenv("TRAINBOX_JUPYTER")
    box, said = launch(aws, dlami, "forced", ami=dlami)
    assert instance.get(ec2, box.instance_id).image_id == dlami, "--ami overrides"


def test_a_cpu_build_is_not_used_for_a_gpu_type_nor_a_newer_dlami_pick_for_p2(aws, dlami):
    cpu_spec = images.spec_tag(setup.SetupOptions.from_env().spec_id(), "cpu")
    image_id, _ = bake(aws, dlami, spec=cpu_spec)
    ec2 = aws.client("ec2")
    box, said = launch(aws, dlami, "gpu")
    assert instance.get(ec2, box.instance_id).image_id == dlami, said
    # The rule for which DLAMI drives which GPU is ami.py's: p2 needs a K80 one.
    assert amis.supports("Deep Learning AMI (Ubuntu 18.04) Version 60.0", "p2.xlarge")
    assert not amis.supports("Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20260101", "p2.xlarge")
    assert amis.supports("Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20260101", "g5.xlarge")


def test_down_keeps_images_and_rm_leaves_no_image_or_snapshot(aws, dlami):
    image_id, _ = bake(aws, dlami, "src")
    ec2 = aws.client("ec2")
    teardown.destroy(ec2, "us-east-1", "src", poll_s=0.01)
    left = {r.kind for r in tagged_resources(ec2, "us-east-1", "src")} - {"instance"}
    assert left == {"image", "snapshot"}, left
    snaps = [s.id for s in images.get(ec2, image_id).snapshots]
    said: list[str] = []
    removed = images.remove(ec2, image_id, said.append)
    assert set(removed) == {image_id, *snaps}
    assert images.list_images(ec2) == [] and images.get(ec2, image_id) is None
    assert (
        ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "snapshot-id", "Values": snaps}])["Snapshots"] == []
    )
    assert {r.kind for r in tagged_resources(ec2, "us-east-1")} <= {"instance"}


def test_rm_refuses_an_ami_trainbox_did_not_make(aws, dlami):
    from common.errors import UsageError

    ec2 = aws.client("ec2")
    with pytest.raises(UsageError, match="not a trainbox image"):
        images.remove(ec2, dlami)
    assert ec2.describe_images(ImageIds=[dlami])["Images"], "untouched"


def test_marker_says_the_build():
    assert box_clean.build_of("spec abc\npython=3.11.2 tensorflow=2.21.0 keras=3.15.1 gpus=1\n") == "gpu"
    assert box_clean.build_of("spec abc\npython=3.11.2 tensorflow=2.21.0 keras=3.15.1\n") == "cpu"
