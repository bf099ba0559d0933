"""One place that makes boto3 clients and names AWS errors (both halves use it:
provision for EC2, remote for S3 data sets). Tagging lives in provision/tags.py.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

from .errors import CloudError, UsageError

# The fake credentials the sandbox hands boto3, so that a sandbox command can
# never touch a real account, whatever the environment holds.
SANDBOX_CREDENTIALS = {"aws_access_key_id": "trainbox-sandbox", "aws_secret_access_key": "trainbox-sandbox"}


@dataclass(frozen=True)
class Cloud:
    """Where to talk to AWS: a region, and the moto endpoint in the sandbox."""

    region: str
    endpoint_url: str | None = None
    sandbox: bool = False

    def client(self, service: str):
        return _client(service, self.region, self.endpoint_url, self.sandbox)


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
