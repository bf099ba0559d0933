"""How trainbox tags what it creates, and finds it again.

Every resource trainbox creates carries ``trainbox:managed=true`` and
``trainbox:name=<box>``; those tags are how every command finds it again.
A box's instances also carry ``trainbox:node=<index>`` (0 for the first, the
coordinator of a multi-node run; an instance without it is node 0).
"""

from __future__ import annotations

TAG_MANAGED = "trainbox:managed"
TAG_NAME = "trainbox:name"
TAG_NODE = "trainbox:node"


def tags(name: str, extra: dict[str, str] | None = None) -> list[dict]:
    t = {TAG_MANAGED: "true", TAG_NAME: name, "Name": f"trainbox-{name}"}
    t.update(extra or {})
    return [{"Key": k, "Value": v} for k, v in t.items()]


def tag_spec(resource_type: str, name: str, extra: dict[str, str] | None = None) -> list[dict]:
    return [{"ResourceType": resource_type, "Tags": tags(name, extra)}]


def name_filters(name: str | None) -> list[dict]:
    """Filters that select trainbox's resources (of one box, if name is given)."""
    f = [{"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}]
    if name is not None:
        f.append({"Name": f"tag:{TAG_NAME}", "Values": [name]})
    return f


def tag_value(resource: dict, key: str) -> str | None:
    for t in resource.get("Tags", []) or []:
        if t["Key"] == key:
            return t["Value"]
    return None


def node_of(resource: dict) -> int:
    """The node index an instance is tagged with (0 when it has none: a box from before nodes)."""
    value = tag_value(resource, TAG_NODE)
    return int(value) if value is not None and value.isdigit() else 0
