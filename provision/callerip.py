"""The laptop's public address, so the security group admits it alone.

The lookup goes over HTTPS to AWS's checkip service. It is a parameter of
``up`` so tests and a cloud on this machine never touch the internet.
"""

from __future__ import annotations

import ipaddress
import urllib.request

from common.errors import UsageError

CHECKIP_URL = "https://checkip.amazonaws.com"


def fetch_public_ip(timeout: float = 5.0) -> str:
    with urllib.request.urlopen(CHECKIP_URL, timeout=timeout) as reply:  # noqa: S310 (fixed https URL)
        return reply.read().decode().strip()


def caller_cidr(fetch=fetch_public_ip) -> str:
    try:
        ip = ipaddress.ip_address(fetch())
    except (OSError, ValueError) as e:
        raise UsageError(
            f"could not detect this machine's public IP ({e})", "pass --ssh-cidr YOUR.IP.ADDRESS/32"
        ) from e
    return f"{ip}/32" if ip.version == 4 else f"{ip}/128"


def check_cidr(cidr: str) -> tuple[str, bool]:
    """The normalised CIDR and whether it opens SSH to the whole internet."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError as e:
        raise UsageError(f"--ssh-cidr {cidr!r} is not a CIDR", "give an address like 203.0.113.7/32") from e
    return str(net), net.prefixlen == 0
