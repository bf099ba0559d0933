"""How trainbox tags what it creates, and finds it again.

Every resource trainbox creates carries ``trainbox:managed=true`` and
``trainbox:name=<box>``; those tags are how every command finds it again.
"""
from __future__ import annotations

TAG_MANAGED = "trainbox:managed"
TAG_NAME = "trainbox:name"


def tags(name: str, extra: dict[str, str] | None = None) -> list[dict]:
    t = {TAG_MANAGED: "true", TAG_NAME: name, "Name": f"trainbox-{name}"}
    t.update(extra or {})
    return [{"Key": k, "Value": v} for k, v in t.items()]


def tag_spec(resource_type: str, name: str) -> list[dict]:
    return [{"ResourceType": resource_type, "Tags": tags(name)}]


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
