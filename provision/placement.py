"""A multi-node box's cluster placement group: its nodes on one low-latency network.

One per box with more than one node, named ``trainbox-<box>`` and tagged at
creation like everything else, so ``down`` finds it by tags alone and deletes
it after the instances (AWS refuses to delete a group that holds any).
A cluster group lives in one availability zone: the first node placed in it
pins the zone, and every other node launches there.
"""

from __future__ import annotations

from .tags import name_filters, tag_spec

STRATEGY = "cluster"
# A deleted group may still be listed for a while, in state "deleted".
LIVE_STATES = ("pending", "available", "deleting")


def group_name(name: str) -> str:
    return f"trainbox-{name}"


def find(ec2, name: str) -> str | None:
    """The box's live placement group's name, or None."""
    groups = ec2.describe_placement_groups(Filters=name_filters(name))["PlacementGroups"]
    live = [g for g in groups if g.get("State") in LIVE_STATES]
    return live[0]["GroupName"] if live else None


def ensure(ec2, name: str) -> str:
    """The box's placement group, created (tagged) if it has none; its name."""
    found = find(ec2, name)
    if found is not None:
        return found
    created = ec2.create_placement_group(
        GroupName=group_name(name), Strategy=STRATEGY, TagSpecifications=tag_spec("placement-group", name)
    )
    return created["PlacementGroup"]["GroupName"]
