"""The box's SSH key pair: created by AWS, private key saved 0600 locally."""
from __future__ import annotations

import logging
from pathlib import Path

from . import paths
from .aws import name_filters, tag_spec

log = logging.getLogger(__name__)


def key_name(name: str) -> str:
    return f"trainbox-{name}"


def find_key_pair(ec2, name: str) -> dict | None:
    pairs = ec2.describe_key_pairs(Filters=name_filters(name))["KeyPairs"]
    return pairs[0] if pairs else None


def ensure_key_pair(ec2, name: str) -> tuple[str, Path]:
    """The key pair's name and the local private key, creating both if needed.

    If AWS has the pair but the local private key is lost, the pair is useless
    (AWS never returns a private key twice): it is replaced by a new one.
    """
    path = paths.key_path(name)
    existing = find_key_pair(ec2, name)
    if existing and path.exists():
        return existing["KeyName"], path
    if existing:
        log.warning("the private key of %s is missing locally; replacing the key pair", existing["KeyName"])
        ec2.delete_key_pair(KeyName=existing["KeyName"])
    created = ec2.create_key_pair(
        KeyName=key_name(name), KeyType="ed25519", TagSpecifications=tag_spec("key-pair", name)
    )
    paths.write_private(path, created["KeyMaterial"])
    return created["KeyName"], path
