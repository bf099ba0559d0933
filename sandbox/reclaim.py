"""`sandbox-notice --action terminate`: the sandbox plays AWS reclaiming a --recover box's spot instance.

On AWS, a spot instance the group launched is reclaimed so: its IMDS answers the
termination notice two minutes ahead, the instance is terminated, and the group
(desired capacity still 1) launches a replacement, whose first boot runs the
launch template's user-data with the instance role's credentials in its own
IMDS. Nothing of the laptop's takes part, and the laptop's state names the old
instance until it next asks (provision/recover.py ``follow`` moves it).

Played here, with no other laptop command:

- the notice: the box's IMDS stand-in (sandbox/imds.py; a process box's is started
  for it) answers ``{"action": "terminate", "time": ...}``, ``in_s`` seconds ahead;
- at that time, the instance is terminated through the Auto Scaling API
  (TerminateInstanceInAutoScalingGroup, ShouldDecrementDesiredCapacity=False): moto
  launches the replacement at once, as AWS does within minutes;
- what moto lacks, the machine: the old instance's box is powered off and removed
  with its disk and its IMDS stand-in, and the replacement gets a box of its own
  (sandbox/cloud.py, as ``settle`` makes one): a fresh disk, its user-data run by
  cloud-init, its own IMDS answering its own instance id and the role's credentials.
  The laptop's state and host-key pins are left for ``follow`` to move.

Also unlike AWS: moto's group launches the replacement of the same type in the same
zone (AWS picks whichever type and zone has capacity), and its instances are not
marked spot (no InstanceLifecycle): the sandbox's group is a group of one, no more.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

from box.layout import DEFAULT_WORKDIR
from common.aws import Cloud, aws_errors
from common.errors import CloudError, UsageError
from common.state import BoxState
from provision import instance, recover

from . import boxes
from .cloud import make_box, remove_box

# AWS gives the notice two minutes ahead; the sandbox, this many seconds unless told.
NOTICE_S = 5.0
# moto launches the replacement in the terminate call itself; AWS within minutes.
REPLACEMENT_TIMEOUT_S = 60.0

Say = Callable[[str], None]


def check_recover(box: BoxState) -> str:
    """The box's group; a box without one is refused (nothing would launch another instance)."""
    group = recover.group_of_box(box)
    if not group:
        raise UsageError(
            f"box '{box.name}' is not a --recover box: no group would replace its terminated instance",
            "`--action stop` plays a spot stop; a box made with `up --sandbox --spot --recover` is replaced",
        )
    return group


def terminate(cloud: Cloud, box: BoxState, in_s: float, say: Say) -> instance.Instance:
    """Play the reclaim (the module's docstring); the replacement instance, its box booted."""
    group = check_recover(box)
    asg, ec2 = cloud.client("autoscaling"), cloud.client("ec2")
    with aws_errors("ask the box's group for its instance"):
        g = recover.describe_group(asg, group)
        iid = recover.group_instance_id(g) if g else None
        if g is None or iid is None:
            raise CloudError(f"box '{box.name}''s group {group} has no instance now", "retry in a minute")
        inst = instance.get(ec2, iid)
    if boxes.made_for(box.name) != iid or boxes.box_running(box.name) is None:
        box_for(cloud, box, inst, say)  # the group's instance has no box here yet: AWS would have booted it
    boxes.ensure_imds(box.name)
    at = time.time() + in_s
    doc = boxes.set_notice(box.name, "terminate", in_s)
    say(f"spot notice given: {iid}'s IMDS answers spot/instance-action {doc} (AWS: 2 minutes ahead; here {in_s:g}s)")
    time.sleep(max(0.0, at - time.time()))  # the notice's time: what AWS waits for, not a synchronisation
    with aws_errors("terminate the instance through its group"):
        asg.terminate_instance_in_auto_scaling_group(InstanceId=iid, ShouldDecrementDesiredCapacity=False)
    say(f"{iid} terminated (spot reclaim), through the Auto Scaling API: the group keeps its desired capacity of 1")
    new = _replacement(cloud, group, iid)
    say(f"{new.id} ({new.type}, {new.zone}) launched by group {group}")
    box_for(cloud, box, new, say)
    return new


def _replacement(cloud: Cloud, group: str, old: str) -> instance.Instance:
    asg, ec2 = cloud.client("autoscaling"), cloud.client("ec2")
    deadline = time.monotonic() + REPLACEMENT_TIMEOUT_S
    while True:
        with aws_errors("ask the group for its replacement"):
            g = recover.describe_group(asg, group)
            iid = recover.group_instance_id(g) if g else None
            if iid not in (None, old):
                return instance.get(ec2, iid)
        if time.monotonic() > deadline:
            raise CloudError(
                f"group {group} launched no replacement for {old} in {REPLACEMENT_TIMEOUT_S:.0f}s",
                "`python -m provision state` asks again",
            )
        time.sleep(cloud.poll_s or 1.0)


def box_for(cloud: Cloud, box: BoxState, inst: instance.Instance, say: Say) -> None:
    """The box on this machine is the one for ``inst``: the old instance's powered off and removed
    with its disk and IMDS stand-in, the new one booted, as AWS starts the instance. The laptop's
    state is not touched (a copy is booted from): ``follow`` moves it when the laptop next asks."""
    with boxes.box_lock(box.name):
        if boxes.made_for(box.name) == inst.id and boxes.box_running(box.name) is not None:
            say(f"{inst.id}'s box is up already")
            return
        old, kind = boxes.made_for(box.name), boxes.kind_of(box.name)
        remove_box(box.name)
        if old:
            say(f"{old}'s box is gone: powered off, its disk and its IMDS stand-in removed")
        how = (
            "a fresh disk, its user-data run by cloud-init, its own IMDS"
            if kind == "container"
            else "its own sshd on a fresh disk (a process box runs no user-data)"
        )
        say(f"{inst.id}'s {kind} box booting: {how}")
        t0 = time.monotonic()
        playing = copy.deepcopy(box)
        playing.instance_id, playing.instance_type, playing.workdir = inst.id, inst.type, DEFAULT_WORKDIR
        make_box(cloud, playing, kind, lambda s: None, inst.image_id)
        if kind == "container":
            boxes.ensure_imds(box.name)  # booted with it; a process box's starts with a notice
        say(f"{inst.id}'s box booted in {time.monotonic() - t0:.1f}s (SSH on 127.0.0.1:{playing.ssh_port})")
