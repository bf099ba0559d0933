"""The box's SSH key pair: created by AWS, private key saved 0600 locally."""

from __future__ import annotations

import logging
from pathlib import Path

from common import paths
from common.errors import UsageError, name_flag

from .tags import name_filters, tag_spec

log = logging.getLogger(__name__)


def key_name(name: str) -> str:
    return f"trainbox-{name}"


def find_key_pair(ec2, name: str) -> dict | None:
    pairs = ec2.describe_key_pairs(Filters=name_filters(name))["KeyPairs"]
    return pairs[0] if pairs else None


def ensure_key_pair(ec2, name: str, instance_id: str | None = None) -> tuple[str, Path]:
    """The key pair's name and the local private key, creating both if needed.

    ``instance_id``: the box's live instance, if there is one. It trusts the
    key it was launched with, whatever EC2's key pair list says now: that
    local key is kept, and if it is lost no new one is made (the box would
    refuse it). With no instance, a pair whose private key is lost is useless
    (AWS never returns a private key twice): it is replaced by a new one.
    """
    path = paths.key_path(name)
    if instance_id is not None:
        if path.exists():
            return key_name(name), path
        raise UsageError(
            f"the private key of box '{name}' is missing ({path}) and its instance {instance_id} accepts only that key",
            f"restore the key file at {path}, or run `python -m provision down{name_flag(name)}` then `up` for a new box",
        )
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
