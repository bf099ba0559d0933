"""``up --spot --recover``: the box is whatever instance an EC2 Auto Scaling group of one has now.

A group of exactly one (min = max = desired = 1) over several spot types and every zone of
the region that offers them is a controller AWS runs for free: when the spot instance is
reclaimed (terminated, not stopped), the group launches another, in whichever zone and type
has capacity (price-capacity-optimized), and capacity rebalancing starts it early on AWS's
rebalance recommendation. Its launch template holds what ``up`` sets on an instance
(provision/instance.py run_instances_args: image, user-data, IMDSv2 only, the encrypted gp3
root, the security group, the key pair, the tags), less the subnet (the group picks the
zone) and the spot request (the group's policy makes every instance spot).

Everything is tagged as the rest of the box is; ``state``, ``ip``, ``ssh``, ``ls`` and the
cost follow the group's instance: the group is asked, then that instance described
(``follow``). The state records the group in ``extra``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

from box.layout import STORE_BOOTSTRAP
from common import hostkeys, state
from common.aws import Cloud, aws_errors, error_code
from common.errors import CloudError, UsageError, name_flag
from common.state import BoxState

from . import instance, network, prices
from .tags import TAG_NODE, name_filters, tag_spec, tags

# The nearest GPU peers of a type, tried after it: the same number of GPUs with at least its
# GPU memory and vCPUs, x86_64 (one Deep Learning AMI boots them all), in the same vCPU
# quota family ("G and VT"), so a run that fitted on the type fits on each. A type not
# here recovers on its own type only (across zones); --instance-types chooses others.
PEERS: dict[str, tuple[str, ...]] = {
    "g4dn.xlarge": ("g5.xlarge", "g6.xlarge", "g4dn.2xlarge"),  # T4 16 GB -> A10G, L4 24 GB; 2x vCPU
    "g4dn.2xlarge": ("g5.2xlarge", "g6.2xlarge", "g4dn.4xlarge"),
    "g5.xlarge": ("g6.xlarge", "g5.2xlarge", "g6.2xlarge"),  # A10G 24 GB -> L4 24 GB
    "g5.2xlarge": ("g6.2xlarge", "g5.4xlarge"),
    "g6.xlarge": ("g5.xlarge", "g6.2xlarge", "g5.2xlarge"),
    "g6.2xlarge": ("g5.2xlarge", "g5.4xlarge"),
}

PEERS_HELP = "the --instance-type and its nearest GPU peers, e.g. g4dn.xlarge: " + ", ".join(PEERS["g4dn.xlarge"])


def instance_types_arg(text: str) -> list[str]:
    """--instance-types A,B,...: EC2 type names, each once."""
    import argparse
    import re

    types = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in types if not re.fullmatch(r"[a-z][a-z0-9-]*\.[a-z0-9]+", t)]
    if not types or bad:
        raise argparse.ArgumentTypeError(f"--instance-types {text!r}: not a list of EC2 types like g5.xlarge,g6.xlarge")
    return list(dict.fromkeys(types))


# The group's instance states that are the box (a launching one included).
LIVE_LIFECYCLE = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")


def group_name(box: str) -> str:
    return f"trainbox-{box}"


def template_name(box: str) -> str:
    return f"trainbox-{box}"


def group_of_box(box: BoxState | None) -> str | None:
    """The box's group, if it is a --recover box (from its state)."""
    return (box.extra or {}).get("group") if box is not None else None


def check_options(opts):
    """Bad combinations are refused before any AWS call; the options, the first of
    --instance-types as the type (the preflight and the quota check look at it)."""
    if opts.instance_types and not opts.recover:
        raise UsageError("--instance-types needs --recover", "add `--spot --recover`, or drop --instance-types")
    if not opts.recover:
        return opts
    if not opts.spot:
        raise UsageError("--recover needs --spot (the group replaces a reclaimed spot instance)", "add --spot")
    if opts.nodes > 1:
        raise UsageError(
            "--recover keeps a box of one instance: --nodes above 1 is not supported with it",
            "drop --nodes, or drop --recover (a multi-node run resumes on its own instances)",
        )
    if opts.instance_types:
        import dataclasses

        return dataclasses.replace(opts, instance_type=opts.instance_types[0])
    return opts


def instance_types(primary: str, given: list[str] | None) -> list[str]:
    """The group's types, in order: the ones given, else the type and its PEERS."""
    types = list(given) if given else [primary, *PEERS.get(primary, ())]
    return list(dict.fromkeys(types))  # each once, first place kept


def offered(ec2, types: list[str], explicit: bool) -> tuple[list[str], list[str]]:
    """(the types offered in some zone, every zone that offers one of them). A type the user
    named that no zone offers is refused; a default peer not offered here is dropped."""
    zones_of: dict[str, set[str]] = {t: set() for t in types}
    for page in ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": types}]
    ):
        for o in page["InstanceTypeOfferings"]:
            zones_of.setdefault(o["InstanceType"], set()).add(o["Location"])
    missing = [t for t in types if not zones_of.get(t)]
    if missing and (explicit or missing[0] == types[0]):
        raise UsageError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not offered in any zone of this region",
            "pass --instance-types with types offered here, or another --region",
        )
    kept = [t for t in types if zones_of.get(t)]
    return kept, sorted(set().union(*(zones_of[t] for t in kept)))


def template_data(spec: instance.LaunchSpec, profile_arn: str | None = None) -> dict:
    """The launch template: what `up` asks RunInstances for (instance.run_instances_args), less
    the subnet (the group's) and the spot request (the group's policy), user-data in base64
    (RunInstances encodes it itself; a template holds it encoded)."""
    args = instance.run_instances_args(spec)
    nics = [
        {k: v for k, v in nic.items() if k != "SubnetId"} | {"DeleteOnTermination": True}
        for nic in args["NetworkInterfaces"]
    ]
    data = {
        "ImageId": args["ImageId"],
        "InstanceType": args["InstanceType"],
        "KeyName": args["KeyName"],
        "UserData": base64.b64encode(
            spec.user_data if isinstance(spec.user_data, bytes) else spec.user_data.encode()
        ).decode(),
        "NetworkInterfaces": nics,
        "MetadataOptions": args["MetadataOptions"],
        "BlockDeviceMappings": args["BlockDeviceMappings"],
        "TagSpecifications": [t for t in args["TagSpecifications"] if t["ResourceType"] in ("instance", "volume")],
        # A stopped instance is unhealthy to the group, which terminates it and launches another:
        # the guards' shutdown terminates at once (the run's state lives on in the next stages, not the disk).
        "InstanceInitiatedShutdownBehavior": "terminate",
    }
    if profile_arn:
        # The box's instance role (provision/boxstore.py): its prefix in trainbox's bucket, nothing else.
        data["IamInstanceProfile"] = {"Arn": profile_arn}
    return data


def group_args(name: str, template_id: str, subnets: list[str], types: list[str]) -> dict:
    """The CreateAutoScalingGroup request, kept pure so tests can read it whole."""
    group_tags = [
        {"Key": t["Key"], "Value": t["Value"], "PropagateAtLaunch": True} for t in tags(name, {TAG_NODE: "0"})
    ]
    return dict(
        AutoScalingGroupName=group_name(name),
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        VPCZoneIdentifier=",".join(subnets),
        CapacityRebalance=True,
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateId": template_id, "Version": "$Latest"},
                "Overrides": [{"InstanceType": t} for t in types],
            },
            "InstancesDistribution": {
                "OnDemandBaseCapacity": 0,
                "OnDemandPercentageAboveBaseCapacity": 0,
                "SpotAllocationStrategy": "price-capacity-optimized",
            },
        },
        Tags=group_tags,
    )


def find_template(ec2, name: str) -> str | None:
    found = ec2.describe_launch_templates(Filters=name_filters(name))["LaunchTemplates"]
    return found[0]["LaunchTemplateId"] if found else None


def ensure_template(ec2, name: str, data: dict) -> str:
    existing = find_template(ec2, name)
    if existing:
        return existing
    made = ec2.create_launch_template(
        LaunchTemplateName=template_name(name),
        LaunchTemplateData=data,
        TagSpecifications=tag_spec("launch-template", name),
    )
    return made["LaunchTemplate"]["LaunchTemplateId"]


def describe_group(asg, group: str) -> dict | None:
    found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return found[0] if found else None


def group_instance_id(g: dict) -> str | None:
    """The instance the group has now (InService first, then one launching)."""
    live = [i for i in g.get("Instances", []) if i.get("LifecycleState") in LIVE_LIFECYCLE]
    live.sort(key=lambda i: i.get("LifecycleState") != "InService")
    return live[0]["InstanceId"] if live else None


def wait_for_instance(asg, ec2, group: str, timeout_s: float = 900.0, poll_s: float = 5.0) -> instance.Instance:
    """The group's instance once it has one (AWS launches it asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        g = describe_group(asg, group)
        iid = group_instance_id(g) if g else None
        if iid:
            return instance.get(ec2, iid)
        if time.monotonic() > deadline:
            raise CloudError(
                f"group {group} has launched no instance in {timeout_s:.0f}s (no spot capacity for its types?)",
                "see its activity history in the EC2 console (Auto Scaling groups), or retry with more --instance-types",
            )
        time.sleep(poll_s)


def up_group(
    cloud: Cloud,
    opts,
    types: list[str],
    zones: list[str],
    image,
    key_name: str,
    cidr: str,
    live: list[instance.Instance],
    user_data: Callable[[dict], bytes],
    root_device: str,
    say: Callable[[str], None],
) -> tuple[instance.Instance, dict]:
    """Make (or reuse) the box's checkpoint store, template and group; the group's instance, and
    what the state records of them (``record``). user_data: the first-boot script for a store
    ({"url": "s3://bucket/prefix/", "region"}), rendered once the store is made."""
    from . import boxstore

    ec2, asg = cloud.client("ec2"), cloud.client("autoscaling")
    group = group_name(opts.name)
    existing = describe_group(asg, group)
    if existing is None and live:
        raise UsageError(
            f"box '{opts.name}' was made without --recover ({live[0].id}): it is not turned into a group",
            f"`python -m provision down{name_flag(opts.name)}` first, or `up` it without --recover",
        )
    net = network.ensure_network(ec2, opts.name, zones[0], cidr)
    store = boxstore.ensure(cloud, opts.name, say)
    if opts.bootstrap is not None:
        # The environment's bootstrap, which each new instance's agent runs (box/keep.py): the
        # user-data has no room for it beside the agent's store modules.
        cloud.client("s3").put_object(
            Bucket=store.bucket, Key=store.prefix + STORE_BOOTSTRAP, Body=opts.bootstrap.encode()
        )
    if existing is not None:
        say(f"reusing group {group} ({existing['DesiredCapacity']} instance of {len(types)} type(s))")
        try:
            prior = state.load(opts.name)
        except state.CorruptState:
            prior = None
        if prior is not None and group_of_box(prior):
            was = prior.instance_id
            inst = follow(cloud, prior)  # a replacement since: the state (and a stand-in's machine) move to it
            if inst.id != was:
                say(f"the group replaced {was} by {inst.id} ({inst.type} in {inst.zone})")
        return wait_for_instance(asg, ec2, group), {
            "launch_template": find_template(ec2, opts.name),
            "store": store.as_state(),
        }
    rtb = network.ensure_route_table(
        ec2, opts.name, net.vpc_id, network.ensure_internet_gateway(ec2, opts.name, net.vpc_id)
    )
    subnets = [network.ensure_subnet(ec2, opts.name, net.vpc_id, z, rtb) for z in zones]
    spec = instance.LaunchSpec(
        name=opts.name,
        image_id=image.id,
        root_device=root_device,
        instance_type=types[0],
        key_name=key_name,
        subnet_id="",
        security_group_id=net.security_group_id,
        user_data=user_data(
            {"url": f"s3://{store.bucket}/{store.prefix}", "region": cloud.region, "group": group_name(opts.name)}
        ),
        volume_gb=opts.volume_gb,
        spot=False,  # the group's policy makes it spot
    )
    template_id = ensure_template(ec2, opts.name, template_data(spec, store.profile_arn))
    say(
        f"creating group {group}: 1 spot instance of {', '.join(types)} over {len(zones)} zone(s) "
        f"({', '.join(zones)}; price-capacity-optimized, capacity rebalancing; ssh from {cidr} only)"
    )
    asg.create_auto_scaling_group(**group_args(opts.name, template_id, subnets, types))
    return wait_for_instance(asg, ec2, group), {"launch_template": template_id, "store": store.as_state()}


def record(box: BoxState, opts, inst: instance.Instance, made: dict) -> None:
    """The group (and what up_group made for it) in the box's state."""
    box.extra = {
        **(box.extra or {}),
        **made,
        "group": group_name(opts.name),
        "instance_types": instance_types(opts.instance_type, opts.instance_types),
    }
    box.price_per_hour = prices.price_per_hour(inst.type, _price_overrides())


def _price_overrides() -> dict:
    from .config import price_overrides

    return price_overrides()


# ---------------------------------------------------------------- following the group's instance


def follow(cloud: Cloud, box: BoxState) -> instance.Instance:
    """The instance the box's group has now; when it is not the one the state names (the
    group replaced it), the state moves to it (the old host-key pin is dropped; the new
    instance's is pinned from its console output when AWS has it) and the replacement is
    recorded in ``extra["replaced"]``. A cloud standing in for AWS plays the group's
    health check first (``cloud.observe``) and gives the new instance its machine (``cloud.settle``)."""
    group = group_of_box(box) or group_name(box.name)
    with aws_errors("ask the box's group for its instance"):
        cloud.observe(box.name, box)  # a stand-in plays the group's health check (AWS runs its own)
        asg, ec2 = cloud.client("autoscaling"), cloud.client("ec2")
        g = describe_group(asg, group)
        if g is None:
            raise CloudError(
                f"box '{box.name}''s group {group} is gone",
                f"`python -m provision down{name_flag(box.name)}` cleans up",
            )
        iid = group_instance_id(g)
        if iid is None and g.get("DesiredCapacity") == 0:
            raise GroupStopped(
                f"box '{box.name}' is stopped: its group {group} is at 0 instances (its guard, or "
                "`provision stop`); its runs' checkpoints are kept in S3",
                f"`python -m provision start{name_flag(box.name)}` launches an instance that resumes them",
            )
        if iid is None:
            raise CloudError(
                f"box '{box.name}''s group {group} has no instance now: AWS is launching a replacement",
                "retry in a minute (`python -m provision state`)",
            )
        inst = instance.get(ec2, iid)
    if inst.id != box.instance_id:
        _adopt(cloud, box, inst)
    return inst


class GroupStopped(CloudError):
    """The box's group is at 0 instances: stopped (by its guard, or `provision stop`)."""


def set_size(cloud: Cloud, box: BoxState, size: int, timeout_s: float = 900.0) -> None:
    """Stop (0) or start (1) a --recover box: the group's minimum and desired capacity. At 0 AWS
    terminates its instance (whose agent mirrors the runs to S3 as it shuts down); at 1 it
    launches one, whose agent restores and resumes them. Returns once the group has that many."""
    group = group_of_box(box) or group_name(box.name)
    asg = cloud.client("autoscaling")
    with aws_errors(f"set group {group} to {size} instance(s)"):
        asg.update_auto_scaling_group(AutoScalingGroupName=group, MinSize=size, DesiredCapacity=size)
        deadline = time.monotonic() + timeout_s
        while True:
            cloud.observe(box.name, box)
            g = describe_group(asg, group)
            has = 0 if g is None else int(group_instance_id(g) is not None)
            if has == size:
                return
            if time.monotonic() > deadline:
                raise CloudError(
                    f"group {group} did not reach {size} instance(s) in {timeout_s:.0f}s",
                    "see its activity history in the EC2 console (Auto Scaling groups)",
                )
            time.sleep(cloud.poll_s or 5.0)


def _adopt(cloud: Cloud, box: BoxState, inst: instance.Instance) -> None:
    old = box.instance_id
    # When the group launched the new instance (the laptop may learn of it much later): a run's
    # events and its replacements are told in time order (remote/interruptions.py).
    at = min(time.time(), inst.launch_time.timestamp()) if inst.launch_time else time.time()
    box.extra.setdefault("replaced", []).append(
        {"instance": old, "by": inst.id, "at": at, "zone": inst.zone, "type": inst.type}
    )
    if box.ssh_host:
        hostkeys.forget(box.ssh_host, box.ssh_port)
    box.instance_id, box.instance_type = inst.id, inst.type
    box.ssh_host, box.public_ip, box.private_ip = inst.public_ip or "", inst.public_ip, inst.private_ip
    box.launched_at = inst.launch_time.timestamp() if inst.launch_time else time.time()
    box.price_per_hour = prices.price_per_hour(inst.type, _price_overrides())
    # The new instance runs: a stand-in gives it a machine of its own, reached where it says.
    cloud.settle(box.name, box=box)
    if inst.public_ip and not cloud.own_addresses:
        keys = instance.console_host_keys(cloud.client("ec2"), inst.id)
        if keys:
            hostkeys.pin(inst.public_ip, box.ssh_port, keys)
    state.save(box)


def says(box: BoxState, inst: instance.Instance) -> str:
    """The group, in words, for `state`'s spot line."""
    types = box.extra.get("instance_types") or [inst.type]
    line = f"group {group_of_box(box)}: spot, {len(types)} type(s), {inst.type} in {inst.zone} now"
    replaced = box.extra.get("replaced") or []
    if replaced:
        last = replaced[-1]
        at = time.strftime("%H:%M:%S", time.localtime(last["at"]))
        line += f"; replaced {len(replaced)}x, last {last['instance']} -> {last['by']} at {at}"
    return line


# ---------------------------------------------------------------- teardown (provision/teardown.py)


def delete_scaling_group(asg, group: str, poll_s: float = 5.0, timeout_s: float = 900.0) -> None:
    """Delete the group with its instances (ForceDelete) and wait until AWS has no such group."""
    from botocore.exceptions import ClientError

    try:
        asg.delete_auto_scaling_group(AutoScalingGroupName=group, ForceDelete=True)
    except ClientError as e:
        if not _group_gone(e):
            raise
    deadline = time.monotonic() + timeout_s
    while describe_group(asg, group) is not None:
        if time.monotonic() > deadline:
            raise CloudError(f"group {group} is still being deleted after {timeout_s:.0f}s", "run `down` again")
        time.sleep(poll_s)


def _group_gone(e: Exception) -> bool:
    return error_code(e) == "ValidationError" and "not found" in str(e).lower()
