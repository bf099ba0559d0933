"""The sandbox's AWS gains EC2 placement groups, which moto (5.2.5) lacks.

moto answers CreatePlacementGroup, DescribePlacementGroups and
DeletePlacementGroup with "not implemented", so without this the sandbox
could not run the code path a multi-node box takes on AWS (provision/placement.py),
nor could the tests check that `down` removes the group. This adds the three
actions to moto's EC2 responses, as moto's own would be: the requests are
parsed and the answers serialised by moto from botocore's EC2 model, the
groups live in moto's per-account, per-region EC2 backend (emptied by its
reset), tags and filters as AWS documents them. What AWS does beyond that
(the capacity a cluster group has, refusing to delete a group that still
holds instances) is not played.

``install()`` is a no-op once moto implements the actions itself: then
moto's own answer them. Only the sandbox's moto (``python -m
sandbox.motoplace``, sandbox/boxes.py) and the tests' moto load it;
nothing on AWS's path imports this module.
"""

from __future__ import annotations

import secrets

ACTIONS = ("create_placement_group", "describe_placement_groups", "delete_placement_group")
STRATEGIES = ("cluster", "spread", "partition")


def _groups(backend) -> dict:
    # Kept on the backend itself, so moto's reset (a new backend) empties it.
    if not hasattr(backend, "_trainbox_placement_groups"):
        backend._trainbox_placement_groups = {}
    return backend._trainbox_placement_groups


def _matches(group: dict, name: str, values: list[str]) -> bool:
    tags = {t["Key"]: t["Value"] for t in group["Tags"]}
    if name.startswith("tag:"):
        return tags.get(name[4:]) in values
    if name == "tag-key":
        return any(k in values for k in tags)
    fields = {"group-name": "GroupName", "group-id": "GroupId", "state": "State", "strategy": "Strategy"}
    if name not in fields:
        raise NotImplementedError(f"placement group filter {name!r} is not played by sandbox/motoplace.py")
    return group[fields[name]] in values


def create_placement_group(self):
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError

    name = self._get_param("GroupName")
    strategy = self._get_param("Strategy")
    self.error_on_dryrun()
    groups = _groups(self.ec2_backend)
    if not name:
        raise EC2ClientError("MissingParameter", "The request must contain the parameter groupName")
    if strategy not in STRATEGIES:
        raise EC2ClientError("InvalidParameterValue", f"Value ({strategy}) for parameter strategy is invalid.")
    if name in groups:
        raise EC2ClientError("InvalidPlacementGroup.Duplicate", f"The placement group '{name}' already exists.")
    tags = self._parse_tag_specification("placement-group").get("placement-group", {})
    group_id = f"pg-{secrets.token_hex(8)}"
    groups[name] = {
        "GroupName": name,
        "State": "available",
        "Strategy": strategy,
        "GroupId": group_id,
        "GroupArn": f"arn:aws:ec2:{self.region}:{self.current_account}:placement-group/{name}",
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    return ActionResult({"PlacementGroup": groups[name]})


def describe_placement_groups(self):
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError

    names = self._get_param("GroupNames", [])
    ids = self._get_param("GroupIds", [])
    filters = self._filters_from_querystring()
    groups = _groups(self.ec2_backend)
    for n in names:
        if n not in groups:
            raise EC2ClientError("InvalidPlacementGroup.Unknown", f"The Placement Group '{n}' is unknown.")
    found = [
        g
        for g in groups.values()
        if (not names or g["GroupName"] in names)
        and (not ids or g["GroupId"] in ids)
        and all(_matches(g, k, v) for k, v in filters.items())
    ]
    return ActionResult({"PlacementGroups": found})


def delete_placement_group(self):
    from moto.core.responses import EmptyResult
    from moto.ec2.exceptions import EC2ClientError

    name = self._get_param("GroupName")
    self.error_on_dryrun()
    if _groups(self.ec2_backend).pop(name, None) is None:
        raise EC2ClientError("InvalidPlacementGroup.Unknown", f"The Placement Group '{name}' is unknown.")
    return EmptyResult()


def install() -> bool:
    """Add the three actions to moto's EC2 responses; False if moto has them already."""
    from moto.ec2.responses import EC2Response

    if all(hasattr(EC2Response, a) for a in ACTIONS):
        return False
    for fn in (create_placement_group, describe_placement_groups, delete_placement_group):
        setattr(EC2Response, fn.__name__, fn)
    return True


def main(argv: list[str] | None = None) -> None:
    """``python -m sandbox.motoplace ARGS``: moto's server (moto.server's own flags), with placement groups."""
    from moto.server import main as moto_main

    install()
    moto_main(argv)


if __name__ == "__main__":
    main()
