"""Images of a box's environment: bake one, list them, pick one for ``up``, remove one.

A trainbox image is an AMI made from a box whose environment is ready
(remote/setup.py's marker), after its disk was cleaned of the user's things
(remote/bake.py). ``up`` boots the newest image of the same environment, so
the boot-time bootstrap finds the environment ready and installs nothing.

What an image is "of" is its spec tag: the bootstrap's own spec
(``SetupOptions.spec_id()``: the pins, the Python, the layout format; the
one owner of that fact) and the build the box installed (``gpu``: TensorFlow
with its CUDA wheels, seen to find the GPU; ``cpu``), as ``<spec>-<build>``.

The image and its snapshots carry ``trainbox:managed``, ``trainbox:name``
(the box it came from), ``trainbox:spec`` and ``trainbox:base-ami`` (the
Deep Learning AMI under it, also by name, so an image keeps saying what it
was made from once that DLAMI is gone). They outlive the box: ``down``
keeps them unless ``--images``; a snapshot bills per GB-month while it exists.
A cloud standing in for AWS keeps its images' disks itself (``cloud.prepare_image``,
``cloud.settle_image``; the sandbox's: sandbox/images.py).

Why ~370 lines: an image's whole life on AWS (pick, bake, wait, list with
its snapshots and their cost, remove and verify), each step short, read
together because each relies on the tags the others write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from common.aws import aws_errors, error_code
from common.errors import CloudError, UsageError, name_flag

from . import ami as amis
from .tags import TAG_MANAGED, TAG_NAME, name_filters, tag_value, tags

TAG_SPEC = "trainbox:spec"
TAG_BASE = "trainbox:base-ami"
TAG_BASE_NAME = "trainbox:base-name"
TAG_USER = "trainbox:login-user"
TAG_IMAGE = "trainbox:image"  # on a snapshot: the image it belongs to

# gp3/standard EBS snapshot storage, us-east-1 (AWS EBS pricing page, "Snapshots:
# Standard $0.05/GB-month"). Override in trainbox.toml: [prices] "snapshot-gb-month" = 0.05
SNAPSHOT_GB_MONTH = 0.05
PRICE_KEY = "snapshot-gb-month"

KEPT_TEXT = (
    "kept: trainbox's environment (env, the current envs/ build, tools/uv, bootstrap.sh) and the system; "
    "removed: runs, data cache, code, logs, Jupyter state, older environments, SSH keys "
    "(authorized_keys too: cloud-init puts each new box's own there), shell and Python history, "
    "caches (~/.cache, ~/.keras), ~/.aws, and with sudo the system logs, root's keys and cloud-init's state"
)


def spec_tag(spec_id: str, build: str) -> str:
    """What an image is of: the bootstrap's spec (remote/setup.py SetupOptions.spec_id(): pins, Python, format) and the build."""
    return f"{spec_id}-{build}"


def wanted_build(ec2, instance_type: str, fixed: str | None = None) -> str:
    """The build a box of this type installs: gpu where it has an NVIDIA GPU; ``fixed``: the
    cloud's build whatever the type (``cloud.box_build``: a stand-in's box is this machine)."""
    if fixed:
        return fixed
    from botocore.exceptions import ClientError

    try:
        info = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    except ClientError:
        info = []
    if info:
        gpus = info[0].get("GpuInfo", {}).get("Gpus", [])
        return "gpu" if any(g.get("Manufacturer") == "NVIDIA" for g in gpus) else "cpu"
    return "gpu" if amis.family(instance_type)[:1] in ("g", "p") else "cpu"


# ---------------------------------------------------------------- what AWS has


@dataclass(frozen=True)
class Snapshot:
    id: str
    size_gb: float
    exact: bool  # the written blocks (FullSnapshotSizeInBytes); else the volume's size, an upper bound
    state: str = ""


@dataclass(frozen=True)
class TrainboxImage:
    id: str
    name: str
    box: str
    spec: str
    base_ami: str
    base_name: str
    login_user: str
    state: str
    created: float  # epoch seconds
    snapshots: tuple[Snapshot, ...] = field(default=())

    @property
    def size_gb(self) -> float:
        return sum(s.size_gb for s in self.snapshots)

    @property
    def size_exact(self) -> bool:
        return all(s.exact for s in self.snapshots)

    def monthly_cost(self, gb_month: float = SNAPSHOT_GB_MONTH) -> float:
        return self.size_gb * gb_month

    def as_ami(self) -> amis.Image:
        return amis.Image(self.id, self.name, user=self.login_user)

    def as_dict(self, gb_month: float = SNAPSHOT_GB_MONTH) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "snapshots"}
        d["snapshots"] = [s.__dict__ for s in self.snapshots]
        d.update(
            size_gb=round(self.size_gb, 3),
            size_exact=self.size_exact,
            monthly_cost=round(self.monthly_cost(gb_month), 4),
        )
        return d


def gb_month_price() -> float:
    from .config import price_overrides

    return float(price_overrides().get(PRICE_KEY, SNAPSHOT_GB_MONTH))


def _created(d: dict) -> float:
    from datetime import datetime

    text = d.get("CreationDate") or ""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _snapshot_ids(image: dict) -> list[str]:
    return [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]


def _snapshots(ec2, ids: list[str]) -> dict[str, Snapshot]:
    if not ids:
        return {}
    found = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "snapshot-id", "Values": ids}])["Snapshots"]
    out = {}
    for s in found:
        full = s.get("FullSnapshotSizeInBytes")
        size, exact = (full / 2**30, True) if full else (float(s.get("VolumeSize", 0)), False)
        out[s["SnapshotId"]] = Snapshot(s["SnapshotId"], size, exact, s.get("State", ""))
    return out


def list_images(ec2, box: str | None = None) -> list[TrainboxImage]:
    """trainbox's images in this region (of one box, if named), newest first."""
    raw = ec2.describe_images(Owners=["self"], Filters=name_filters(box) + [{"Name": "tag-key", "Values": [TAG_SPEC]}])[
        "Images"
    ]
    snaps = _snapshots(ec2, [i for d in raw for i in _snapshot_ids(d)])
    out = [_image(d, snaps) for d in raw if d.get("State") not in ("deregistered", "disabled")]
    return sorted(out, key=lambda i: i.created, reverse=True)


def _image(d: dict, snaps: dict[str, Snapshot]) -> TrainboxImage:
    return TrainboxImage(
        id=d["ImageId"],
        name=d.get("Name", ""),
        box=tag_value(d, TAG_NAME) or "?",
        spec=tag_value(d, TAG_SPEC) or "",
        base_ami=tag_value(d, TAG_BASE) or "",
        base_name=tag_value(d, TAG_BASE_NAME) or "",
        login_user=tag_value(d, TAG_USER) or "ubuntu",
        state=d.get("State", ""),
        created=_created(d),
        snapshots=tuple(snaps[i] for i in _snapshot_ids(d) if i in snaps),
    )


def get(ec2, image_id: str) -> TrainboxImage | None:
    """The trainbox image with this id, or None (no such AMI, or not trainbox's)."""
    try:
        raw = ec2.describe_images(ImageIds=[image_id])["Images"]
    except Exception as e:  # noqa: BLE001 (only "no such AMI" means None)
        if error_code(e).startswith("InvalidAMIID"):
            return None
        raise
    raw = [d for d in raw if tag_value(d, TAG_MANAGED) == "true" and tag_value(d, TAG_SPEC)]
    if not raw or raw[0].get("State") == "deregistered":
        return None
    return _image(raw[0], _snapshots(ec2, _snapshot_ids(raw[0])))


def pick(
    ec2, spec: str, instance_type: str, any_type: bool = False
) -> tuple[TrainboxImage | None, list[TrainboxImage]]:
    """The newest available image of this spec whose base DLAMI supports the type (``any_type``: the
    cloud's boxes are not of the type, so any); and every image seen."""
    seen = list_images(ec2)
    for image in seen:
        if (
            image.state == "available"
            and image.spec == spec
            and (any_type or amis.supports(image.base_name, instance_type))
        ):
            return image, seen
    return None, seen


def base_of(ec2, ami_id: str) -> amis.Image:
    """The Deep Learning AMI under a box's AMI: itself, or a trainbox image's own base."""
    baked = get(ec2, ami_id)
    if baked is not None:
        return amis.Image(baked.base_ami, baked.base_name)
    return amis.describe(ec2, ami_id)


# ---------------------------------------------------------------- AWS: bake, wait, remove


def bake(
    ec2,
    instance_id: str,
    box: str,
    image_name: str,
    spec: str,
    base: amis.Image,
    say: Callable[[str], None],
    poll_s: float = 15.0,
    timeout_s: float = 3600.0,
) -> str:
    """create_image from the (stopped) instance, tag it and its snapshots, wait until available; the AMI id."""
    extra = {TAG_SPEC: spec, TAG_BASE: base.id, TAG_BASE_NAME: base.name[:255], TAG_USER: base.login_user}
    image_id = ec2.create_image(
        InstanceId=instance_id,
        Name=image_name,
        NoReboot=True,
        Description=f"trainbox environment {spec} from box {box} on {base.id}"[:255],
        TagSpecifications=[{"ResourceType": "image", "Tags": tags(box, {**extra, "Name": image_name})}],
    )["ImageId"]
    say(f"creating image {image_id} ({image_name}) from {instance_id}")
    wait_available(ec2, image_id, say, poll_s, timeout_s)
    # The snapshots get their tags now, once the image names them (moto cannot
    # tag them at creation; AWS can, but this way one code path does both).
    snaps = _snapshot_ids(ec2.describe_images(ImageIds=[image_id])["Images"][0])
    if snaps:
        ec2.create_tags(Resources=snaps, Tags=tags(box, {**extra, TAG_IMAGE: image_id, "Name": image_name}))
    return image_id


def wait_available(ec2, image_id: str, say: Callable[[str], None], poll_s: float, timeout_s: float) -> None:
    start = time.monotonic()
    last = None
    while True:
        d = ec2.describe_images(ImageIds=[image_id])["Images"][0]
        state = d.get("State", "")
        if state == "available":
            say(f"image {image_id} is available ({time.monotonic() - start:.0f} s)")
            return
        if state in ("failed", "error", "invalid", "deregistered"):
            reason = d.get("StateReason", {}).get("Message", state)
            raise CloudError(
                f"image {image_id} failed ({reason})", f"remove it with `python -m provision image rm {image_id}`"
            )
        progress = [
            s.get("Progress", "")
            for s in ec2.describe_snapshots(
                OwnerIds=["self"], Filters=[{"Name": "snapshot-id", "Values": _snapshot_ids(d) or ["none"]}]
            )["Snapshots"]
        ]
        now = f"{state}, snapshot {', '.join(p for p in progress if p) or 'starting'}"
        if now != last:
            say(f"image {image_id}: {now} ({time.monotonic() - start:.0f} s)")
            last = now
        if time.monotonic() - start > timeout_s:
            raise CloudError(
                f"image {image_id} is still {state} after {timeout_s / 60:.0f} min",
                "check `python -m provision image ls` later; it becomes usable once available",
            )
        time.sleep(poll_s)


def remove(ec2, image_id: str, say: Callable[[str], None] = lambda s: None) -> list[str]:
    """Deregister a trainbox image and delete its snapshots, verifying both are gone; what was removed."""
    from botocore.exceptions import ClientError

    try:
        raw = ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as e:
        if not error_code(e).startswith("InvalidAMIID"):
            raise
        raw = []
    if raw and not (tag_value(raw[0], TAG_MANAGED) == "true" and tag_value(raw[0], TAG_SPEC)):
        raise UsageError(
            f"{image_id} is not a trainbox image", "trainbox removes only the images it made (see `image ls`)"
        )
    snaps = set(_snapshot_ids(raw[0])) if raw else set()
    snaps |= {
        s["SnapshotId"]
        for s in ec2.describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": f"tag:{TAG_IMAGE}", "Values": [image_id]}]
        )["Snapshots"]
    }
    if not raw and not snaps:
        raise UsageError(f"no trainbox image {image_id} in this region", "see `python -m provision image ls`")
    removed = []
    if raw and raw[0].get("State") != "deregistered":
        ec2.deregister_image(ImageId=image_id)
        say(f"deregistered image {image_id}")
        removed.append(image_id)
    for s in sorted(snaps):
        try:
            ec2.delete_snapshot(SnapshotId=s)
            say(f"deleted snapshot {s}")
            removed.append(s)
        except ClientError as e:
            if not error_code(e).endswith("NotFound"):
                raise
    left = [f"image {image_id}"] if get(ec2, image_id) else []
    left += (
        [
            f"snapshot {s}"
            for s in ec2.describe_snapshots(
                OwnerIds=["self"], Filters=[{"Name": "snapshot-id", "Values": sorted(snaps)}]
            )["Snapshots"]
        ]
        if snaps
        else []
    )
    if left:
        raise CloudError(
            "removing the image left " + ", ".join(left), f"run `python -m provision image rm {image_id}` again"
        )
    return removed


# ---------------------------------------------------------------- the flow behind `image create`


def default_name(box: str) -> str:
    return f"trainbox-{box}-{time.strftime('%Y%m%d-%H%M%S')}"


def create(
    cloud,
    box_name: str,
    say: Callable[[str], None],
    spec_id: str,
    prepare_box: Callable[[object], str],
    image_name: str | None = None,
    poll_s: float | None = None,
    timeout_s: float = 3600.0,
) -> TrainboxImage:
    """Bake box ``box_name``'s ready environment into an image (see the module's docstring).

    ``spec_id``: the environment's spec; ``prepare_box(box_state)``: checks the
    box's environment is ready for it and cleans the disk over SSH (remote/bake.py,
    composed by the CLI); it returns the build ("gpu"/"cpu")."""
    from common import state

    from . import lifecycle

    box = state.load(box_name)
    if box is None:
        raise lifecycle.no_box(box_name)
    inst = lifecycle.find_instance(cloud, box_name)
    if inst.state != "running":
        flag = name_flag(box_name)
        raise UsageError(
            f"box '{box_name}' is {inst.state}: its disk is cleaned over SSH before imaging",
            f"start it with `python -m provision start{flag}`, then `image create` again",
        )
    ec2 = cloud.client("ec2")
    with aws_errors("find the box's AMI"):
        base = base_of(ec2, inst.image_id or box.ami)
    say(f"cleaning box '{box_name}' for the image ({KEPT_TEXT})")
    build = prepare_box(box)
    say(
        f"stopping box '{box_name}' so its disk is imaged whole (it stays stopped: `up` brings it back, "
        "booting like a new box)"
    )
    lifecycle.stop(cloud, box_name)
    cloud.prepare_image(box_name, say)  # a stand-in readies its machine's disk (AWS snapshots the volume as it is)
    with aws_errors("create the image"):
        image_id = bake(
            ec2,
            inst.id,
            box_name,
            image_name or default_name(box_name),
            spec_tag(spec_id, build),
            base,
            say,
            poll_s=poll_s if poll_s is not None else (cloud.poll_s or 15.0),
            timeout_s=timeout_s,
        )
        cloud.settle_image(image_id, say, box=box_name)  # a stand-in's disk for it
        made = get(ec2, image_id)
    assert made is not None
    return made


def remove_images(cloud, ids: list[str], say: Callable[[str], None]) -> list[str]:
    with aws_errors("remove the image"):
        removed = []
        for image_id in ids:
            removed += remove(cloud.client("ec2"), image_id, say)
            cloud.settle_image(image_id, say)  # a stand-in drops its disk for it
    return removed


def choose(ec2, instance_type: str, box_build: str | None, spec_id: str) -> tuple[TrainboxImage | None, str]:
    """The image ``up`` boots for this environment (``spec_id``) and type, or None; and why, in words.
    ``box_build``: the cloud's build whatever the type (``cloud.box_build``), or None."""
    spec = spec_tag(spec_id, wanted_build(ec2, instance_type, box_build))
    image, seen = pick(ec2, spec, instance_type, any_type=box_build is not None)
    if image is not None:
        age = _age(time.time() - image.created)
        return image, (
            f"trainbox image of this environment ({spec}), made {age} ago from box '{image.box}' "
            f"on {image.base_ami or '?'}: nothing to install"
        )
    if not seen:
        return None, "no trainbox image yet: the bootstrap installs the environment at boot (`image create` bakes one)"
    same = [i for i in seen if i.spec == spec]
    if same:
        return None, (
            f"the trainbox images of this environment ({', '.join(i.id for i in same)}) are not available "
            f"or their DLAMI does not support {instance_type}: the bootstrap installs the environment at boot"
        )
    return None, (
        f"{len(seen)} trainbox image(s), none of this environment ({spec}: the pins or the build differ): "
        "the bootstrap installs it at boot"
    )


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"
