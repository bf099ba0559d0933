"""A --recover box's guard lets go of its group before it shuts the instance down (standard library only).

The cost guard (templates/user-data.sh.j2) shuts an idle box, or one past --max-hours, down.
On a --recover box the instance is one of an Auto Scaling group of one, whose launch template
says "terminate on shutdown": the group would take the shutdown for a lost instance and launch
another, which would idle and shut down in turn, billing forever. So before it shuts down, the
guard runs this: the group goes to zero (UpdateAutoScalingGroup MinSize=0, DesiredCapacity=0),
signed with the instance role's credentials (box/s3.py's signer and credential source), whose
policy allows that one call on that one group (provision/boxstore.py). The runs' checkpoints
stay in S3; `python -m provision start` sets the group back to one, and its new instance
resumes them.

Settings come from the store's environment file (box/layout.py STORE_ENV_FILE): TRAINBOX_GROUP,
AWS_REGION, and AWS_ENDPOINT_URL_AUTOSCALING where another endpoint plays AWS (the sandbox's moto).
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

from box.s3 import CredentialSource, Request, S3Error, send, signed_headers, urlopen_transport

API_VERSION = "2011-01-01"


def release(
    group: str,
    region: str,
    endpoint: str | None = None,
    credentials: CredentialSource | None = None,
    transport: Callable[[Request], Any] = urlopen_transport,
) -> None:
    """Set the group's minimum and desired capacity to 0; S3Error (its code) when AWS refuses."""
    origin = (endpoint or f"https://autoscaling.{region}.amazonaws.com").rstrip("/")
    parts = urllib.parse.urlsplit(origin)
    path = parts.path or "/"
    body = urllib.parse.urlencode(
        {
            "Action": "UpdateAutoScalingGroup",
            "Version": API_VERSION,
            "AutoScalingGroupName": group,
            "MinSize": "0",
            "DesiredCapacity": "0",
        }
    ).encode()
    digest = hashlib.sha256(body).hexdigest()
    form = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
    creds = (credentials or CredentialSource()).get()
    headers = signed_headers(creds, region, "POST", parts.netloc, path, {}, digest, form, service="autoscaling")
    send(transport, Request("POST", origin + path, headers, body)).close()


def main(argv: list[str] | None = None) -> int:
    group = os.environ.get("TRAINBOX_GROUP", "")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    if not group or not region:
        print("trainbox-release: no TRAINBOX_GROUP or AWS_REGION: not a --recover box", file=sys.stderr)
        return 2
    try:
        release(group, region, os.environ.get("AWS_ENDPOINT_URL_AUTOSCALING"))
    except S3Error as e:
        print(f"trainbox-release: could not set group {group} to 0 ({e.code}): {e}", file=sys.stderr)
        return 1
    print(f"trainbox-release: group {group} set to 0 instances (its runs stay in S3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
