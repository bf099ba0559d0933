"""One place that makes boto3 clients and names AWS errors (both halves use it:
provision for EC2, remote for S3 data sets). Tagging lives in provision/tags.py.

A Cloud is where provision's AWS code runs: AWS itself, or a cloud that stands
in for it on this machine (the sandbox: sandbox/cloud.py). A stand-in speaks
AWS's API at its endpoint, so provision runs the same AWS steps there; what
differs is its pace, what its API lacks, and its machines, which follow what
its EC2 says. Those are the ``StandIn`` below; provision only ever asks the
Cloud (``cloud.settle(...)``, ``cloud.poll_s``...), which answers for AWS
itself with nothing to do.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .errors import CloudError, UsageError

if TYPE_CHECKING:
    from .state import BoxState

Say = Callable[[str], None]


def _quiet(text: str) -> None:
    pass


class StandIn(Protocol):
    """A cloud standing in for AWS on this machine: its differences from AWS, and its machines.

    Its machines RECONCILE: after each AWS call that changes a box's instances (or images),
    provision calls ``settle`` (``settle_image``), and the stand-in asks its EC2 which
    instances of the box exist in which state and makes its machines match (running: a
    booted machine, reached where it says; stopped: powered off; gone: removed).
    ``observe`` plays, before provision reads a box's instances, what AWS does on its own
    when a machine changes under it (a guest that shut itself down is a stopped instance)."""

    name: str  # said beside the region ("sandbox")
    poll_s: float  # its API answers at once: a wait asks again this often
    has_quotas: bool  # whether EC2's vCPU quotas can be read there
    ssh_cidr: str  # where SSH to its machines comes from: its machines only ever admit that
    box_build: str  # the build a box installs whatever its instance type (its machines are this one)

    def base_image(self, ec2) -> Any:
        """The image ``up`` boots when it is given none and has no trainbox image (AWS: the newest DLAMI)."""
        ...

    def observe(self, cloud: Cloud, name: str, box: BoxState | None) -> None: ...

    def settle(self, cloud: Cloud, name: str, say: Say, box: BoxState | None, launch: Any) -> None: ...

    def prepare_image(self, cloud: Cloud, name: str, say: Say) -> None: ...

    def settle_image(self, cloud: Cloud, image_id: str, say: Say, box: str | None) -> None: ...


_stand_in: Callable[[], StandIn] | None = None


def register_stand_in(make: Callable[[], StandIn]) -> None:
    """What ``Cloud(..., sandbox=True)`` stands for: the sandbox package registers itself on import."""
    global _stand_in
    _stand_in = functools.cache(make)


# The fake credentials the sandbox hands boto3, so that a sandbox command can
# never touch a real account, whatever the environment holds.
SANDBOX_CREDENTIALS = {"aws_access_key_id": "trainbox-sandbox", "aws_secret_access_key": "trainbox-sandbox"}


@dataclass(frozen=True)
class Cloud:
    """Where to talk to AWS: a region, and the moto endpoint in the sandbox."""

    region: str
    endpoint_url: str | None = None
    sandbox: bool = False

    @classmethod
    def of_box(cls, region: str, endpoint_url: str | None) -> Cloud:
        """The cloud a box's state names: a state records an endpoint only for a stand-in's box."""
        return cls(region, endpoint_url, sandbox=endpoint_url is not None)

    def client(self, service: str):
        return _client(service, self.region, self.endpoint_url, self.sandbox)

    @property
    def stand_in(self) -> StandIn | None:
        """The cloud standing in for AWS here, or None: AWS itself."""
        if not self.sandbox:
            return None
        if _stand_in is None:
            raise RuntimeError("a sandbox Cloud needs the sandbox package: `import sandbox` first")
        return _stand_in()

    # ---- what differs from AWS (AWS's answer when there is no stand-in)

    @property
    def where(self) -> str:
        """The region, and the stand-in's name when there is one."""
        s = self.stand_in
        return f"{self.region}, {s.name}" if s else self.region

    @property
    def poll_s(self) -> float | None:
        """How often a wait asks again; None: each wait's own AWS pace."""
        s = self.stand_in
        return s.poll_s if s else None

    @property
    def has_quotas(self) -> bool:
        s = self.stand_in
        return s.has_quotas if s else True

    @property
    def ssh_cidr(self) -> str | None:
        """Where SSH comes from when the cloud fixes it; None: the laptop's public IP (or --ssh-cidr)."""
        s = self.stand_in
        return s.ssh_cidr if s else None

    @property
    def box_build(self) -> str | None:
        """The build every box installs whatever its type; None: the type's (a GPU type: gpu)."""
        s = self.stand_in
        return s.box_build if s else None

    @property
    def own_addresses(self) -> bool:
        """Whether the cloud says where SSH reaches its machines (``settle`` writes it into the
        box's state, host keys pinned) rather than AWS's way: the instance's public IP, port 22."""
        return self.stand_in is not None

    @property
    def state_endpoint(self) -> str | None:
        """The endpoint a box's state records: a stand-in's (the box lives there); AWS's is boto3's own."""
        return self.endpoint_url if self.stand_in else None

    def base_image(self, ec2) -> Any:
        """The image `up` boots with no --ami and no trainbox image; None: AWS's newest DLAMI for the type."""
        s = self.stand_in
        return s.base_image(ec2) if s else None

    # ---- the hooks: AWS's machines are AWS's, so each is nothing on AWS

    def observe(self, name: str, box: BoxState | None = None) -> None:
        """Before reading box ``name``'s instances: a stand-in tells its EC2 what its machines did on their own."""
        s = self.stand_in
        if s:
            s.observe(self, name, box)

    def settle(self, name: str, say: Say = _quiet, box: BoxState | None = None, launch: Any = None) -> None:
        """After AWS calls that changed box ``name``'s instances: a stand-in's machines follow them, and
        where SSH reaches each is written into ``box`` (when given). ``launch``: `up`'s options."""
        s = self.stand_in
        if s:
            s.settle(self, name, say, box, launch)

    def prepare_image(self, name: str, say: Say = _quiet) -> None:
        """Before an AMI is made of box ``name``'s stopped instance: a stand-in readies its machine's disk."""
        s = self.stand_in
        if s:
            s.prepare_image(self, name, say)

    def settle_image(self, image_id: str, say: Say = _quiet, box: str | None = None) -> None:
        """After an AMI was made (of ``box``) or deregistered: a stand-in's disks follow."""
        s = self.stand_in
        if s:
            s.settle_image(self, image_id, say, box)


@functools.cache
def _client(service: str, region: str, endpoint_url: str | None, sandbox: bool):
    import boto3
    from botocore.config import Config

    # Throttling and transient errors: botocore's adaptive mode backs off on
    # exactly those codes; anything else surfaces at once.
    config = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=10, read_timeout=60)
    import botocore.session

    creds = SANDBOX_CREDENTIALS if sandbox else {}
    core = botocore.session.Session()
    # One loader for every client: the parsed service models (EC2's is
    # megabytes of JSON) are read once, not once per client or region.
    core.register_component("data_loader", _loader())
    session = boto3.session.Session(botocore_session=core, region_name=region, **creds)
    return session.client(service, endpoint_url=endpoint_url, config=config)


@functools.lru_cache(maxsize=1)
def _loader():
    import botocore.loaders

    return botocore.loaders.create_loader()


def has_credentials() -> bool:
    """Whether boto3 finds AWS credentials where it looks (the environment, its files, SSO, an
    instance role); nothing is asked of AWS. A config boto3 cannot read counts as having them:
    the first call to AWS then says what is wrong with it."""
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.session.Session().get_credentials() is not None
    except BotoCoreError:
        return True


def error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


# Where the docs list the IAM actions trainbox needs (a heading there).
IAM_HINT = '"IAM permissions" in docs/aws.md'

# What the user can cause, and what they can do about it.
_FIXES = {
    "AuthFailure": ("AWS rejected the credentials", "check `aws sts get-caller-identity` and AWS_PROFILE"),
    "InvalidClientTokenId": ("AWS rejected the credentials", "check `aws sts get-caller-identity` and AWS_PROFILE"),
    "SignatureDoesNotMatch": ("AWS rejected the credentials", "check the secret key of AWS_PROFILE"),
    "ExpiredToken": ("the AWS session token has expired", "log in again (e.g. `aws sso login`)"),
    "UnauthorizedOperation": ("these AWS credentials may not do this", f"grant the actions listed under {IAM_HINT}"),
    "OptInRequired": (
        "this account is not opted in to the region or service",
        "opt in from the AWS console, or use another --region",
    ),
    "VcpuLimitExceeded": (
        "the vCPU quota for this instance family is too low",
        "request a quota increase in the Service Quotas console",
    ),
    "MaxSpotInstanceCountExceeded": ("the spot instance quota is reached", "drop --spot or request a quota increase"),
    "InsufficientInstanceCapacity": (
        "AWS has no capacity for this instance type right now",
        "try another --region or --instance-type, or retry later",
    ),
    "InvalidAMIID.NotFound": (
        "the AMI does not exist in this region",
        "drop --ami to use the newest Deep Learning AMI",
    ),
    "InvalidAMIID.Malformed": ("the AMI id is malformed", "pass an id like ami-0123456789abcdef0"),
    "Unsupported": ("AWS does not support this request here", "try another availability zone or instance type"),
    "InstanceLimitExceeded": (
        "the account's instance limit for this type is reached",
        "request a quota increase in the Service Quotas console",
    ),
    "PendingVerification": (
        "AWS is still verifying this new account",
        "wait for AWS's e-mail (usually minutes to hours), then retry",
    ),
    "Blocked": ("AWS has blocked this account", "contact AWS Support"),
    "AccessDenied": ("these AWS credentials may not do this", f"grant the actions listed under {IAM_HINT}"),
    "AccessDeniedException": ("these AWS credentials may not do this", f"grant the actions listed under {IAM_HINT}"),
    "RequestLimitExceeded": ("AWS kept throttling the requests, even after retries", "wait a minute and retry"),
    "InvalidParameterValue": ("AWS rejected a value of the request", "check --instance-type, --volume-gb and --ami"),
    "InvalidKeyPair.NotFound": ("the box's key pair is gone from AWS", "run `python -m provision up` again"),
    "SpotMaxPriceTooLow": ("the spot price is above the allowed maximum", "drop --spot or retry later"),
    "InvalidInstanceID.NotFound": ("the instance no longer exists", "run `python -m provision up` again"),
    "IncorrectInstanceState": ("the instance is not in a state that allows this", "check `python -m provision state`"),
}


@contextlib.contextmanager
def aws_errors(action: str):
    """Turn botocore failures inside the block into one-line CloudErrors."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
    )

    try:
        yield
    except ClientError as e:
        code = error_code(e)
        message = e.response.get("Error", {}).get("Message", "")
        what, fix = _FIXES.get(code, (f"AWS refused to {action}", None))
        raise CloudError(f"{what} ({code}: {message})" if message else f"{what} ({code})", fix) from e
    except NoCredentialsError as e:
        raise CloudError("no AWS credentials found", "set AWS_PROFILE or run `aws configure` (or try --sandbox)") from e
    except NoRegionError as e:
        raise UsageError("no AWS region set", "pass --region or set AWS_REGION") from e
    except EndpointConnectionError as e:
        raise CloudError(
            f"cannot reach AWS to {action} ({e})", "check the network, the region and AWS_ENDPOINT_URL"
        ) from e
    except BotoCoreError as e:
        raise CloudError(f"AWS call failed while trying to {action}: {e}") from e
