"""What happens to a box after ``up``: look, start, stop, tear down.

Each function takes the Cloud and the box name and returns data; the CLI
prints. AWS is asked every time (tags are the truth); the local state is
refreshed from its answer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from common import hostkeys, paths, state
from common.aws import Cloud, aws_errors
from common.errors import UsageError
from common.state import BoxState, Node, no_box

from . import instance, prices, recover, spot, teardown
from .config import price_overrides


@dataclass(frozen=True)
class NodeStatus:
    index: int
    instance_id: str
    state: str
    address: str | None  # where SSH reaches it, while it runs
    private_ip: str | None


@dataclass(frozen=True)
class BoxStatus:
    name: str
    instance_id: str  # node 0's
    instance_type: str
    state: str  # the nodes' state, or "mixed" when they differ (see nodes)
    address: str | None  # node 0's
    uptime_s: float | None  # node 0's
    price_per_hour: float | None  # of the whole box: every node
    cost_so_far: float | None  # every node's since it started
    sandbox: bool  # a cloud standing in for AWS (the word `state` prints, and its JSON's key)
    spot: str | None = None  # the spot request's state, in words; None for an on-demand box
    nodes: tuple[NodeStatus, ...] = ()

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def cloud_of(box: BoxState) -> Cloud:
    """The AWS (or the cloud standing in for it) a box lives in, from its state."""
    return Cloud.of_box(box.region, box.endpoint_url)


def _group_box(name: str) -> BoxState | None:
    """The box's state if it is a --recover box (its group recorded there), else None."""
    try:
        box = state.load(name)
    except state.CorruptState:
        return None
    return box if recover.group_of_box(box) else None


def find_nodes(cloud: Cloud, name: str) -> list[instance.Instance]:
    """The box's live instances, node 0 first; UsageError when there are none.
    A --recover box's is the instance its group has now (recover.follow moves the state to it)."""
    grouped = _group_box(name)
    if grouped is not None:
        return [recover.follow(cloud, grouped)]
    # A cloud standing in for AWS tells its EC2 what its machines did on their own (AWS knows).
    cloud.observe(name)
    with aws_errors("find the box"):
        insts = instance.find_nodes(cloud.client("ec2"), name)
    if not insts:
        raise no_box(name)
    return insts


def find_instance(cloud: Cloud, name: str) -> instance.Instance:
    """The box's node 0 (the box itself, for a box of one node)."""
    return find_nodes(cloud, name)[0]


def status(cloud: Cloud, name: str) -> BoxStatus:
    try:
        insts = find_nodes(cloud, name)
    except recover.GroupStopped:
        return _stopped_group(cloud, name)
    inst = insts[0]
    box = state.load(name)
    price = prices.price_per_hour(inst.type, price_overrides())
    now = time.time()

    def up_s(i: instance.Instance) -> float | None:
        if i.state == "running" and i.launch_time:
            return max(0.0, now - i.launch_time.timestamp())
        return None

    if box is not None and not cloud.own_addresses:
        known = {n.index: n for n in box.node_list()}
        moved = [
            i
            for i in insts
            if i.state == "running" and i.public_ip and i.node in known and i.public_ip != known[i.node].ssh_host
        ]
        for i in moved:
            assert i.public_ip is not None  # only those with one moved
            _moved(box, known[i.node], i.public_ip)
        if moved:
            state.save(box)
    nodes = []
    for i in insts:
        address = None
        on = box.node(i.node) if box is not None and i.node < box.node_count else None
        if on is not None:
            address = f"{on.ssh_host}:{on.ssh_port}" if cloud.own_addresses else on.ssh_host
        elif i.public_ip:
            address = i.public_ip
        private = (on.private_ip if on is not None else None) or i.private_ip
        nodes.append(NodeStatus(i.node, i.id, i.state, address if i.state == "running" else None, private))
    uptimes = [up_s(i) for i in insts]
    running = [u for u in uptimes if u is not None]
    states = {i.state for i in insts}
    return BoxStatus(
        name=name,
        instance_id=inst.id,
        instance_type=inst.type,
        state=states.pop() if len(states) == 1 else "mixed",
        address=nodes[0].address,
        uptime_s=uptimes[0],
        price_per_hour=None if price is None else price * len(insts),
        cost_so_far=prices.cost(price, sum(running)) if running else None,
        sandbox=cloud.stand_in is not None,
        spot=recover.says(box, inst) if box is not None and recover.group_of_box(box) else _spot_says(cloud, inst),
        nodes=tuple(nodes),
    )


def _stopped_group(cloud: Cloud, name: str) -> BoxStatus:
    """A --recover box whose group is at 0 instances: stopped, its last instance named."""
    box = state.load(name)
    assert box is not None  # only a box with a group in its state gets here
    return BoxStatus(
        name=name,
        instance_id=box.instance_id,
        instance_type=box.instance_type,
        state="stopped",
        address=None,
        uptime_s=None,
        price_per_hour=box.price_per_hour,
        cost_so_far=None,
        sandbox=cloud.stand_in is not None,
        spot=f"group {recover.group_of_box(box)}: at 0 instances; its runs are kept in S3",
        nodes=(NodeStatus(0, box.instance_id, "stopped", None, None),),
    )


def _spot_says(cloud: Cloud, inst: instance.Instance) -> str | None:
    if not inst.spot:
        return None
    with aws_errors("read the box's spot request"):
        req = spot.request_of(cloud.client("ec2"), inst.spot_request_id, inst.id)
    return req.says if req else "no spot request found (cancelled?)"


def start(cloud: Cloud, name: str) -> BoxState:
    """Start every node of the box that is not running, and wait until all run. A --recover
    box's group goes back to 1 instance (a new one, which resumes the runs kept in S3)."""
    grouped = _group_box(name)
    if grouped is not None:
        recover.set_size(cloud, grouped, 1)
        recover.follow(cloud, grouped)
        return grouped
    insts = find_nodes(cloud, name)
    with aws_errors("start the box"):
        ec2 = cloud.client("ec2")
        for inst in insts:
            if inst.state == "stopping":
                instance.wait(ec2, inst.id, "stopped")
        idle = [i.id for i in insts if i.state != "running"]
        if idle:
            ec2.start_instances(InstanceIds=idle)
        insts = [instance.wait(ec2, i.id, "running") if i.id in idle else i for i in insts]
    box = state.load(name)
    if box is None:
        raise UsageError(
            f"the box '{name}' runs, but this laptop has no state for it", "run `python -m provision up` to adopt it"
        )
    # The instances run: a cloud standing in for AWS boots its machines and says where they are.
    cloud.settle(name, box=box)
    known = {n.index: n for n in box.node_list()}
    for inst in insts:
        node = known.get(inst.node)
        if node is None:
            continue  # a node this laptop's state does not know: `up --nodes N` adopts it
        if inst.public_ip and not cloud.own_addresses:
            # A stopped and started instance gets a new public IP.
            _moved(box, node, inst.public_ip)
    state.save(box)
    return box


def _moved(box: BoxState, node: Node, ip: str) -> None:
    """The node is at ip now: its host key pin goes with it (never left for first use)."""
    hostkeys.move((node.ssh_host, node.ssh_port), (ip, node.ssh_port))
    node.ssh_host = node.public_ip = ip
    box.set_node(node)


def stop(cloud: Cloud, name: str) -> instance.Instance:
    """Stop every node of the box (disks kept); node 0's instance, stopped. A --recover box's
    group goes to 0 instances: its instance is terminated (the runs are kept in S3, not on its disk)."""
    grouped = _group_box(name)
    if grouped is not None:
        try:
            inst = recover.follow(cloud, grouped)
        except recover.GroupStopped:  # already at 0: stopped, as asked
            with aws_errors("describe the box's last instance"):
                return instance.get(cloud.client("ec2"), grouped.instance_id)
        recover.set_size(cloud, grouped, 0)
        cloud.settle(name, box=grouped)  # a stand-in removes the instance's machine
        with aws_errors("describe the box's last instance"):
            return instance.get(cloud.client("ec2"), inst.id)
    insts = find_nodes(cloud, name)
    with aws_errors("stop the box"):
        ec2 = cloud.client("ec2")
        ec2.stop_instances(InstanceIds=[i.id for i in insts])
        stopped = [instance.wait(ec2, i.id, "stopped") for i in insts]
    cloud.settle(name)  # a stand-in powers its machines off
    return stopped[0]


def destroy(cloud: Cloud, name: str, say: Callable[[str], None], keep_checkpoints: bool = False) -> list:
    """Delete every tagged resource of the box, then the local key and state. A --recover box's
    checkpoint store (provision/boxstore.py: its role, profile and S3 prefix) goes too, unless
    ``keep_checkpoints`` (then the prefix stays); a box without --recover never touches IAM or S3."""
    grouped = _group_box(name) is not None
    with aws_errors("tear the box down"):
        removed = teardown.destroy(
            cloud.client("ec2"),
            cloud.region,
            name,
            say,
            poll_s=cloud.poll_s or 5,
            autoscaling=cloud.client("autoscaling"),
        )
    # No instance is left: a stand-in removes its machines (and itself, once nothing is left in it).
    # Before the store goes: a machine's last words (its agent mirrors its runs as it shuts down, as
    # an instance does while AWS terminates it) must not land in a prefix already deleted.
    cloud.settle(name)
    if grouped or any(r.kind in ("auto-scaling-group", "launch-template") for r in removed):
        from . import boxstore

        with aws_errors("delete the box's checkpoint store"):
            boxstore.destroy(cloud, name, say, keep_prefix=keep_checkpoints)
        cloud.settle(name)  # the store was the last of it: a stand-in with nothing left in it stops
    try:
        box = state.load(name)
    except state.CorruptState:  # named by the caller; removed below with the rest
        box = None
    for node in box.node_list() if box is not None else []:
        if node.ssh_host:
            hostkeys.forget(node.ssh_host, node.ssh_port)
    paths.key_path(name).unlink(missing_ok=True)
    state.forget(name)
    return removed
