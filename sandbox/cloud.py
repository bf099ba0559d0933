"""The sandbox as a cloud: what common/aws.py's ``StandIn`` asks of a cloud standing in for AWS.

provision runs its AWS steps against moto and, after each one that changes a
box's instances, calls ``cloud.settle``: here the boxes RECONCILE with moto.
moto is asked which instances of the box exist in which state, and the boxes
are made to match:

- running: a booted box (``up`` makes a new one, sandbox/attach.py; a box made
  for another instance, as an Auto Scaling group's replacement is, is removed
  and a new one made the same way; ``start`` boots the box it has), and the
  box's state says where SSH reaches each node, its host keys pinned;
- stopping or stopped: the node's box powered off (its jobs ended);
- none left: the box removed with its disk, and moto stopped once nothing of
  trainbox's is left in it.

Where moto lacks an AWS behaviour, it is played here (``observe``, before
provision reads a box's instances): a guest that shut itself down (the guard,
`sudo poweroff`) is a stopped instance, as EC2 makes it; a --recover box's
group replaces an unhealthy instance (sandbox/group.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from box.layout import DEFAULT_WORKDIR
from common import hostkeys, state
from common.aws import Cloud, aws_errors
from common.errors import CloudError
from common.state import BoxState
from provision import instance

from . import attach, boxes, group, images

Say = Callable[[str], None]


class SandboxCloud:
    """The StandIn of common/aws.py for ``Cloud(..., sandbox=True)`` (sandbox/__init__.py registers it)."""

    name = "sandbox"
    # moto answers at once: a wait asks again this often.
    poll_s = 0.2
    # moto has no EC2 vCPU quotas: the check could only warn, every time.
    has_quotas = False
    # The boxes listen on this machine's loopback: SSH comes from there only.
    ssh_cidr = "127.0.0.1/32"
    # The box is this machine, whatever the instance type: no GPU build.
    box_build = "cpu"

    def base_image(self, ec2):
        """moto has no SSM parameter for the newest DLAMI: the newest it lists by name, whatever the type."""
        from provision import ami

        newest = ami.newest_by_name(ec2, ["Deep Learning AMI Ubuntu*"])
        if newest is None:
            raise CloudError("the sandbox's moto lists no Deep Learning AMI", "pass --ami with one it lists")
        return newest

    # ---------------------------------------------------------------- what AWS does on its own

    def observe(self, cloud: Cloud, name: str, box: BoxState | None) -> None:
        """Before provision reads the box's instances, play what AWS does when a machine changes
        under it: a --recover box's group health check (sandbox/group.py); else EC2's answer to
        a guest that shut itself down (the guard, `sudo poweroff`: the container box's nspawn
        ended), a stopped instance."""
        if box is None:
            box = _state_or_none(name)
        from provision import recover

        name_of_group = recover.group_of_box(box) if box is not None else None
        if box is not None and name_of_group:
            g = recover.describe_group(cloud.client("autoscaling"), name_of_group)
            group.health_check(cloud, box, recover.group_instance_id(g) if g else None)
            return
        if boxes.kind_of(name) != "container":
            return  # a process box has no guest to shut down
        ec2 = cloud.client("ec2")
        with aws_errors("find the box"):
            insts = instance.find_nodes(ec2, name)
        for inst in insts:
            if inst.state == "running" and boxes.box_running(name, inst.node) is None:
                with aws_errors("record that the box stopped itself"):
                    instance.stop(ec2, inst.id)

    # ---------------------------------------------------------------- the boxes follow moto

    def settle(self, cloud: Cloud, name: str, say: Say, box: BoxState | None, launch) -> None:
        """Make the box's nodes match moto's instances of it (the module's docstring). ``box``: the
        state to write each running node's address into; ``launch``: `up`'s options (its kind of box).
        Under the box's lock: the sandbox's reclaim (sandbox/reclaim.py) may be booting a replacement."""
        with boxes.box_lock(name):
            self._settle(cloud, name, say, box, launch)

    def _settle(self, cloud: Cloud, name: str, say: Say, box: BoxState | None, launch) -> None:
        ec2 = cloud.client("ec2")
        with aws_errors("find the box's instances"):
            insts = instance.find_nodes(ec2, name)
        if not insts:
            _gone(cloud, name)
            return
        for inst in insts:
            if inst.state in ("stopping", "stopped") and inst.node in boxes.nodes_of(name):
                boxes.stop_box(name, inst.node)
        if box is None or not any(i.state == "running" for i in insts):
            return
        image_of = {i.node: i.image_id for i in insts}
        made_for = boxes.made_for(name)
        if made_for is not None and made_for != box.instance_id:
            # Another instance (the group's replacement): its own box, on a fresh disk; the old one goes with its disk.
            kind = boxes.kind_of(name)
            remove_box(name)
            box.workdir = DEFAULT_WORKDIR  # a process box's disk folder is set again below
            make_box(cloud, box, kind, say, image_of.get(0))
        elif launch is not None:
            make_box(cloud, box, launch.sandbox_box, say, image_of.get(0))
        else:
            _boot(box, {i.node for i in insts if i.state == "running"})

    # ---------------------------------------------------------------- images: the box's disk

    def prepare_image(self, cloud: Cloud, name: str, say: Say) -> None:
        images.check_sandbox_disk(name, say)

    def settle_image(self, cloud: Cloud, image_id: str, say: Say, box: str | None) -> None:
        """An image moto has, made of ``box``, is the box's disk frozen; one moto no longer has, dropped
        (its layer stays while a box or image stands on it, as a volume outlives its AMI)."""
        from provision import images as amis

        if amis.get(cloud.client("ec2"), image_id) is not None:
            if box is not None and not images.sandbox_image_dir(image_id).exists():
                images.freeze_sandbox_disk(box, image_id, say)
            return
        users = images.drop_sandbox_image(image_id)
        if users:
            say(
                f"image {image_id}'s layer stays on this machine while {', '.join(users)} stand(s) on it "
                "(as a volume outlives its AMI): it goes with the last of them"
            )


def _state_or_none(name: str) -> BoxState | None:
    try:
        return state.load(name)
    except state.CorruptState:
        return None


def make_box(cloud: Cloud, box: BoxState, kind: str | None, say: Say, image_id: str | None) -> None:
    """A box for each node of the box's instances, booted (attach.py); a box new here starts
    from its instance's image (``image_id``) when that is a trainbox image."""
    from provision import images as amis

    ec2 = cloud.client("ec2")
    new = not (boxes.box_dir(box.name) / "kind").exists()
    baked = amis.get(ec2, image_id) if new and image_id else None
    # A new container box (each node of it) boots the image's layers; a new process box's disk is copied from it.
    attach.attach_sandbox_box(box, ec2, kind, say, image_id=baked.id if baked else None)
    if baked is None or boxes.kind_of(box.name) != "process":
        return
    if box.node_count > 1:
        say(f"image {baked.id}: the sandbox's process-box nodes do not yet start from an image's disk; they boot bare")
    elif images.thaw_sandbox_disk(baked.id, box.name):
        box.python = None  # the box trains in the image's environment, as on AWS
        say(f"the box's disk starts from image {baked.id}: its environment is ready")
    else:
        say(f"image {baked.id}'s disk is not on this machine: the box starts empty")


def _boot(box: BoxState, running: set[int]) -> None:
    """Boot the box's running nodes (`start`): each where it was when its port is free, host keys pinned."""
    for node in box.node_list():
        if node.index not in running:
            continue  # a node this laptop's state does not know: `up --nodes N` adopts it
        server = boxes.start_box(box.name, Path(box.key_path), node.index)
        host, port = server.address
        hostkeys.pin(host, port, list(server.host_keys))
        node.ssh_host, node.ssh_port = server.address
        box.set_node(node)


def remove_box(name: str) -> None:
    """The box goes with its disk, and with it the image layers no box or image stands on now
    (boxes.py leaves layers to images.py, which owns them)."""
    boxes.remove_box(name)
    images.gc_sandbox_layers()


def _gone(cloud: Cloud, name: str) -> None:
    """No instance of the box is left: its box goes with its disk, and the sandbox's moto stops
    once nothing of trainbox's is left in it (it holds its cloud in memory: nothing is lost)."""
    remove_box(name)
    if boxes.sandbox_boxes() or cloud.endpoint_url != boxes.moto_endpoint():
        return
    with aws_errors("check the sandbox is empty"):
        from provision import boxstore
        from provision.inventory import tagged_resources

        left = tagged_resources(cloud.client("ec2"), cloud.region, autoscaling=cloud.client("autoscaling"))
        # A --recover box's instance role (provision/boxstore.py) outlives its instances until `down`'s last step.
        roles = cloud.client("iam").list_roles(PathPrefix=boxstore.ROLE_PATH)["Roles"]
    if not roles and not [r for r in left if not (r.kind == "instance" and r.state == "terminated")]:
        boxes.stop_moto()
