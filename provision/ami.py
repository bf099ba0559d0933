"""Which Deep Learning AMI a box boots.

Today's DLAMIs are the "Base OSS Nvidia Driver GPU" ones (driver 580+, CUDA
12/13, no TensorFlow: trainbox installs its own environment). AWS publishes
the newest one's id in public SSM parameters. They support G4dn, G5, G6,
G6e, P4, P5 and newer, but not P2 (K80): for p2.* trainbox looks for the
newest older DLAMI by name that still shipped a K80-capable driver.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from common.errors import CloudError

SSM_BASE = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-{os}/latest/ami-id"
DEFAULT_OS = "ubuntu-22.04"
# Name patterns of DLAMIs that still support the K80 (CUDA <= 11, driver 470).
K80_NAME_PATTERNS = ["Deep Learning AMI (Ubuntu 18.04) Version *", "Deep Learning AMI Ubuntu*"]
UNSUPPORTED_FAMILIES = {"p2"}


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    user: str | None = None  # the login user, where the image says (trainbox's images do)

    @property
    def login_user(self) -> str:
        if self.user:
            return self.user
        return "ec2-user" if "Amazon Linux" in self.name else "ubuntu"


def family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def supports(base_name: str, instance_type: str) -> bool:
    """Whether an image made on the DLAMI named ``base_name`` can drive this type's GPU:
    a K80 (p2) needs one of the older K80 DLAMIs; every other type the DLAMIs `resolve` picks."""
    if family(instance_type) not in UNSUPPORTED_FAMILIES:
        return True
    return any(fnmatch.fnmatchcase(base_name, p) for p in K80_NAME_PATTERNS)


def newest_by_name(ec2, patterns: list[str]) -> Image | None:
    images = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": patterns}], IncludeDeprecated=True
    )["Images"]
    if not images:
        return None
    newest = max(images, key=lambda i: i.get("CreationDate", ""))
    return Image(newest["ImageId"], newest.get("Name", ""))


def ssm_lookup(ssm, os_name: str = DEFAULT_OS) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return ssm.get_parameter(Name=SSM_BASE.format(os=os_name))["Parameter"]["Value"]
    except ClientError as e:
        if e.response["Error"]["Code"] in ("ParameterNotFound", "AccessDeniedException"):
            return None
        raise


def describe(ec2, ami_id: str) -> Image:
    images = ec2.describe_images(ImageIds=[ami_id])["Images"]
    if not images:
        raise CloudError(
            f"AMI {ami_id} does not exist in this region", "drop --ami to use the newest Deep Learning AMI"
        )
    return Image(ami_id, images[0].get("Name", ""))


def resolve(
    ec2,
    instance_type: str,
    ami: str | None = None,
    latest_id: Callable[[], str | None] | None = None,
) -> Image:
    """The AMI to boot: ``ami`` if given, else the newest DLAMI for this GPU.

    ``latest_id`` returns the newest Base DLAMI id (the SSM lookup on AWS);
    it is injected so tests can stand in for AWS's public
    parameters, which moto does not have.
    """
    if ami:
        return describe(ec2, ami)
    if family(instance_type) in UNSUPPORTED_FAMILIES:
        image = newest_by_name(ec2, K80_NAME_PATTERNS)
        if image is None:
            raise CloudError(
                f"no Deep Learning AMI supports {instance_type} (K80) in this region any more",
                "use --instance-type g4dn.xlarge, or pass --ami",
            )
        return image
    found = latest_id() if latest_id else None
    if not found:
        raise CloudError(
            "could not find the newest Deep Learning Base AMI in this region",
            "pass --ami ami-... (see the AWS Deep Learning AMI release notes)",
        )
    return describe(ec2, found)
