"""``up``: preflight, network, key, instance, SSH; idempotent per box name.

Every resource is tagged at creation, so whatever step fails, ``down``
finds and removes what was made; running ``up`` again reuses it.
"""
from __future__ import annotations

import getpass
import socket
import sys
import time
from dataclasses import dataclass
from typing import Callable

from box.layout import DEFAULT_WORKDIR, BoxLayout
from common import hostkeys, state
from common.aws import Cloud, aws_errors
from common.errors import CloudError, RemoteError
from common.state import BoxState
import templates

from . import ami as amis
from . import instance, keys, network, preflight, prices, sandbox
from .callerip import caller_cidr, check_cidr


@dataclass
class UpOptions:
    name: str = "default"
    instance_type: str = "g4dn.xlarge"
    spot: bool = False
    ssh_cidr: str | None = None
    max_hours: float = 8.0
    idle_minutes: float = 30.0
    volume_gb: int = 100
    ami: str | None = None
    wait: bool = True
    # The box's first-boot setup of trainbox's environment (the bootstrap the
    # CLI renders with remote/setup.py), started by user-data; None: none.
    bootstrap: str | None = None


def user_data(opts: UpOptions, login_user: str) -> str:
    """The first-boot script; its box paths are the default layout's, under the
    login user's home as the box's passwd has it (user-data looks it up)."""
    extra = {} if opts.bootstrap is None else {"bootstrap": opts.bootstrap}
    return templates.render(
        "user-data.sh.j2",
        **extra,
        layout=BoxLayout(DEFAULT_WORKDIR),
        login_user=login_user,
        name=opts.name,
        max_hours=opts.max_hours,
        idle_minutes=opts.idle_minutes,
    )


def _root_device(ec2, image_id: str) -> str:
    images = ec2.describe_images(ImageIds=[image_id])["Images"]
    return images[0].get("RootDeviceName", "/dev/sda1") if images else "/dev/sda1"


def launch_in_some_zone(ec2, opts: UpOptions, zones: list[str], image: amis.Image, key_name: str, ssh_cidr: str, say) -> instance.Instance:
    """Launch in the first zone with capacity, trying each offered zone in turn."""
    from botocore.exceptions import ClientError

    last = None
    for zone in zones:
        net = network.ensure_network(ec2, opts.name, zone, ssh_cidr)
        spec = instance.LaunchSpec(
            name=opts.name,
            image_id=image.id,
            root_device=_root_device(ec2, image.id),
            instance_type=opts.instance_type,
            key_name=key_name,
            subnet_id=net.subnet_id,
            security_group_id=net.security_group_id,
            user_data=user_data(opts, image.login_user),
            volume_gb=opts.volume_gb,
            spot=opts.spot,
        )
        try:
            return instance.launch(ec2, spec)
        except ClientError as e:
            if not instance.is_capacity_error(e):
                raise
            say(f"no {opts.instance_type} capacity in {zone}; trying the next zone")
            last = e
    raise last  # every zone refused: aws_errors names it


def wait_for_ssh(host: str, port: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                if s.recv(4).startswith(b"SSH"):
                    return
        except OSError:
            pass
        time.sleep(3)
    raise RemoteError(f"the box at {host}:{port} did not answer SSH within {timeout:.0f}s", "check `python -m provision state`, then retry `up`")


def console_host_keys(ec2, instance_id: str) -> list[str]:
    """The host keys cloud-init printed to the console, or [] (not there yet, or no access)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        output = ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output", "")
    except (ClientError, BotoCoreError):  # best effort: first-use pinning follows
        return []
    return hostkeys.keys_from_console(output)


def pin_host_key(ec2, instance_id: str, host: str, port: int = 22, scan=hostkeys.scan) -> tuple[str, list[str]]:
    """Pin the box's host keys; return how ("console" or "first-use") and the keys.

    The console output, when AWS has it, comes from the box itself over AWS's
    API, so it cannot be spoofed by the network; else the key the server
    presents now is pinned (trust on first use) and its fingerprint shown.
    """
    lines = console_host_keys(ec2, instance_id)
    how = "console"
    if not lines:
        how = "first-use"
        lines = scan(host, port)
    hostkeys.pin(host, port, lines)
    return how, lines


def up(cloud: Cloud, opts: UpOptions, say: Callable[[str], None], latest_ami: Callable[[], str | None] | None = None, detect_cidr=caller_cidr) -> BoxState:
    ec2 = cloud.client("ec2")
    # Bad input fails before any AWS call.
    if cloud.sandbox:
        cidr = "127.0.0.1/32"
    else:
        cidr, open_to_all = check_cidr(opts.ssh_cidr) if opts.ssh_cidr else (detect_cidr(), False)
        if open_to_all:
            say("warning: --ssh-cidr 0.0.0.0/0 opens SSH to the whole internet")
    with aws_errors("launch the box"):
        say(f"checking AWS ({cloud.region}{', sandbox' if cloud.sandbox else ''})")
        preflight.check_credentials(cloud)
        preflight.check_region(cloud)
        zones = preflight.check_offered(cloud, opts.instance_type)
        # moto has no EC2 vCPU quotas: in the sandbox the check could only warn, every time.
        quota = None if cloud.sandbox else preflight.check_quota(cloud, opts.instance_type, opts.spot)
        if quota and quota.limit is None:
            say(f"warning: could not read the '{quota.name}' quota; launching anyway")
        if cloud.sandbox and not opts.ami:
            image = amis.newest_by_name(ec2, ["Deep Learning AMI Ubuntu*"])
        else:
            image = amis.resolve(ec2, opts.instance_type, opts.ami, latest_ami)
        say(f"AMI {image.id} ({image.name})")

        inst = instance.find(ec2, opts.name)
        if inst is not None and inst.state == "shutting-down":
            # A dying instance cannot be reused: let it go, then launch anew.
            instance.wait(ec2, inst.id, "terminated")
            inst = None
        # A live instance trusts only its own key: never replace that one.
        key_name, key_file = keys.ensure_key_pair(ec2, opts.name, inst.id if inst else None)

        if inst is None:
            say(f"launching {opts.instance_type} (ssh from {cidr} only)")
            inst = launch_in_some_zone(ec2, opts, zones, image, key_name, cidr, say)
        else:
            # Reuse the box; bring its security group back to this laptop's address.
            network.ensure_network(ec2, opts.name, inst.zone, cidr)
            say(f"reusing {inst.id} ({inst.state})")
            if inst.state == "stopping":
                inst = instance.wait(ec2, inst.id, "stopped")
            if inst.state == "stopped":
                ec2.start_instances(InstanceIds=[inst.id])
        inst = instance.wait(ec2, inst.id, "running")

    price = prices.price_per_hour(opts.instance_type, _price_overrides())
    box = BoxState(
        name=opts.name,
        region=cloud.region,
        instance_id=inst.id,
        instance_type=inst.type,
        ssh_host=inst.public_ip or "",
        ssh_user=image.login_user,
        key_path=str(key_file),
        workdir=DEFAULT_WORKDIR,
        endpoint_url=cloud.endpoint_url if cloud.sandbox else None,
        ami=image.id,
        public_ip=inst.public_ip,
        launched_at=inst.launch_time.timestamp() if inst.launch_time else time.time(),
        price_per_hour=price,
    )
    if cloud.sandbox:
        attach_sandbox_box(box)
    state.save(box)
    if not cloud.sandbox and opts.wait:
        if not box.ssh_host:
            raise CloudError(f"{inst.id} has no public IP", "run `python -m provision down`, then `up` again")
        say(f"waiting for SSH on {box.ssh_host}")
        wait_for_ssh(box.ssh_host, 22)
        how, lines = pin_host_key(ec2, inst.id, box.ssh_host)
        fingerprints = ", ".join(hostkeys.fingerprint(l) for l in lines)
        if how == "console":
            say(f"host key pinned from the console output: {fingerprints}")
        else:
            say(f"host key pinned on first use: {fingerprints} (compare with the console output if in doubt)")
    return box


def attach_sandbox_box(box: BoxState) -> None:
    """Point the state at the sandbox's sshd (started now) instead of moto's fake IP."""
    from pathlib import Path

    server = sandbox.start_box(box.name, Path(box.key_path))
    box.ssh_host, box.ssh_port = server.address
    box.ssh_user = getpass.getuser()
    box.workdir = str(sandbox.box_workdir(box.name))
    # The sandbox box is this machine: its trainbox environment is this Python.
    box.python = sys.executable
    hostkeys.pin(box.ssh_host, box.ssh_port, [server.host_key])


def _price_overrides() -> dict:
    from .config import price_overrides

    return price_overrides()
