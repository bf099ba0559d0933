"""What happens to a box after ``up``: look, start, stop, tear down.

Each function takes the Cloud and the box name and returns data; the CLI
prints. AWS is asked every time (tags are the truth); the local state is
refreshed from its answer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from common import hostkeys, paths, state
from common.aws import Cloud, aws_errors
from common.errors import UsageError, no_box
from common.state import BoxState

from . import instance, prices, sandbox, spot, teardown
from .config import price_overrides


@dataclass(frozen=True)
class BoxStatus:
    name: str
    instance_id: str
    instance_type: str
    state: str
    address: str | None
    uptime_s: float | None
    price_per_hour: float | None
    cost_so_far: float | None
    sandbox: bool
    spot: str | None = None  # the spot request's state, in words; None for an on-demand box

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def cloud_of(box: BoxState) -> Cloud:
    """The AWS (or the sandbox's moto) a box lives in, from its state."""
    return Cloud(box.region, box.endpoint_url, sandbox=box.sandbox)


def find_instance(cloud: Cloud, name: str) -> instance.Instance:
    with aws_errors("find the box"):
        inst = instance.find(cloud.client("ec2"), name)
    if inst is None:
        raise no_box(name)
    if cloud.sandbox and inst.state == "running" and sandbox.kind_of(name) == "container" and sandbox.box_running(name) is None:
        # The guest shut itself down (the guard, or `sudo poweroff`): on EC2 that stops the
        # instance; here the sandbox's AWS hears of it now.
        with aws_errors("record that the box stopped itself"):
            inst = instance.stop(cloud.client("ec2"), inst.id)
    return inst


def status(cloud: Cloud, name: str) -> BoxStatus:
    inst = find_instance(cloud, name)
    box = state.load(name)
    price = prices.price_per_hour(inst.type, price_overrides())
    uptime = None
    if inst.state == "running" and inst.launch_time:
        uptime = max(0.0, time.time() - inst.launch_time.timestamp())
    address = None
    if box is not None:
        if inst.state == "running" and not box.sandbox and inst.public_ip and inst.public_ip != box.ssh_host:
            _moved(box, inst.public_ip)
            state.save(box)
        address = f"{box.ssh_host}:{box.ssh_port}" if box.sandbox else box.ssh_host
    elif inst.public_ip:
        address = inst.public_ip
    return BoxStatus(
        name=name,
        instance_id=inst.id,
        instance_type=inst.type,
        state=inst.state,
        address=address if inst.state == "running" else None,
        uptime_s=uptime,
        price_per_hour=price,
        cost_so_far=prices.cost(price, uptime) if uptime is not None else None,
        sandbox=cloud.sandbox,
        spot=_spot_says(cloud, inst),
    )


def _spot_says(cloud: Cloud, inst: instance.Instance) -> str | None:
    if not inst.spot:
        return None
    with aws_errors("read the box's spot request"):
        req = spot.request_of(cloud.client("ec2"), inst.spot_request_id, inst.id)
    return req.says if req else "no spot request found (cancelled?)"


def start(cloud: Cloud, name: str) -> BoxState:
    inst = find_instance(cloud, name)
    with aws_errors("start the box"):
        ec2 = cloud.client("ec2")
        if inst.state == "stopping":
            instance.wait(ec2, inst.id, "stopped")
        inst = instance.start(ec2, inst.id) if inst.state != "running" else inst
    box = state.load(name)
    if box is None:
        raise UsageError(f"the box '{name}' runs, but this laptop has no state for it", "run `python -m provision up` to adopt it")
    if box.sandbox:
        server = sandbox.start_box(name, Path(box.key_path))
        box.ssh_host, box.ssh_port = server.address
        hostkeys.pin(box.ssh_host, box.ssh_port, list(server.host_keys))
    elif inst.public_ip:
        # A stopped and started instance gets a new public IP.
        _moved(box, inst.public_ip)
    state.save(box)
    return box


def _moved(box: BoxState, ip: str) -> None:
    """The box is at ip now: its host key pin goes with it (never left for first use)."""
    hostkeys.move((box.ssh_host, box.ssh_port), (ip, box.ssh_port))
    box.ssh_host = box.public_ip = ip


def stop(cloud: Cloud, name: str) -> instance.Instance:
    inst = find_instance(cloud, name)
    with aws_errors("stop the box"):
        stopped = instance.stop(cloud.client("ec2"), inst.id)
    if cloud.sandbox:
        sandbox.stop_box(name)
    return stopped


def destroy(cloud: Cloud, name: str, say: Callable[[str], None]) -> list:
    """Delete every tagged resource of the box, then the local key and state."""
    with aws_errors("tear the box down"):
        removed = teardown.destroy(cloud.client("ec2"), cloud.region, name, say, poll_s=0.5 if cloud.sandbox else 5)
    try:
        box = state.load(name)
    except state.CorruptState:  # named by the caller; removed below with the rest
        box = None
    if cloud.sandbox:
        sandbox.remove_box(name)
    if box is not None and box.ssh_host:
        hostkeys.forget(box.ssh_host, box.ssh_port)
    paths.key_path(name).unlink(missing_ok=True)
    state.forget(name)
    if cloud.sandbox and not sandbox.sandbox_boxes() and cloud.endpoint_url == sandbox.moto_endpoint():
        # Nothing of ours is left in the sandbox's AWS: stop its moto server.
        with aws_errors("check the sandbox is empty"):
            from .inventory import tagged_resources

            left = tagged_resources(cloud.client("ec2"), cloud.region)
        if not [r for r in left if not (r.kind == "instance" and r.state == "terminated")]:
            sandbox.stop_moto()
    return removed
