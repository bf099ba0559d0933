"""The sandbox plays a --recover box's Auto Scaling group (provision/recover.py).

moto is the group: it launches the group's instance and, when that instance is terminated
through EC2's TerminateInstances (a spot reclaim), launches the replacement in the same call
(AWS does it after its health check, within minutes). Two behaviours of AWS moto lacks are
played here, in the sandbox only:

- AWS's EC2 health check: a group's instance that is stopped, or whose guest shut itself
  down (the template's shutdown behaviour is terminate; moto ignores it, and the sandbox's
  box going away is that shutdown), is unhealthy; AWS terminates it without lowering the
  desired capacity and launches another. ``health_check`` does that through the Auto
  Scaling API (TerminateInstanceInAutoScalingGroup, ShouldDecrementDesiredCapacity=False),
  and moto launches the replacement.
- The instance itself: each instance the group launches gets a box of its own, as ``up``'s
  instance does (sandbox/cloud.py's ``settle``: a box made for another instance is removed
  with its disk, and the new one made by sandbox/attach.py: the process box's sshd, or the
  container box whose cloud-init runs the instance's user-data), on a fresh disk, since a
  replacement is another instance.
"""

from __future__ import annotations

from common.aws import Cloud
from common.state import BoxState
from provision import instance

from . import boxes


def health_check(cloud: Cloud, box: BoxState, iid: str | None) -> bool:
    """Play AWS's EC2 health check on the group's instance iid; True when it was replaced."""
    if iid is None:
        return False
    inst = instance.get(cloud.client("ec2"), iid)
    ours = iid == box.instance_id
    gone = ours and inst.state == "running" and boxes.box_running(box.name) is None
    if inst.state not in ("stopping", "stopped") and not gone:
        return False
    cloud.client("autoscaling").terminate_instance_in_auto_scaling_group(
        InstanceId=iid, ShouldDecrementDesiredCapacity=False
    )
    return True
