"""``up``: preflight, network, key, instance, SSH; idempotent per box name.

Every resource is tagged at creation, so whatever step fails, ``down``
finds and removes what was made; running ``up`` again reuses it.
"""
from __future__ import annotations

import getpass
import socket
import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

from . import ami as amis
from . import hostkeys, instance, keys, network, preflight, prices, sandbox, state
from .aws import Cloud, aws_errors
from .callerip import caller_cidr, check_cidr
from .errors import CloudError, RemoteError
from .state import BoxState
import templates


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
    sandbox_box: str | None = None  # container, process, or None: the best this machine has


WORKDIR = "trainbox"  # on the box, relative to the login user's home


def guard_period_s(opts: UpOptions) -> int:
    """How often the guard looks: each minute, or a quarter of a limit under 4 min (at least 5 s)."""
    shortest = min(opts.max_hours * 3600, opts.idle_minutes * 60)
    return int(max(5, min(60, shortest / 4)))


def agent_source() -> str:
    """box/agent.py's text, installed by the user-data (standard library only: importing it costs nothing)."""
    import box.agent

    return Path(box.agent.__file__).read_text()


def user_data(opts: UpOptions, login_user: str) -> str:
    from remote import setup  # the box's environment: the bootstrap `remote setup` runs too

    return templates.render(
        "user-data.sh.j2",
        agent=agent_source(),
        bootstrap=setup.render_bootstrap(WORKDIR, setup.SetupOptions.from_env()),
        bootstrap_workdir=WORKDIR,
        login_user=login_user,
        name=opts.name,
        max_hours=opts.max_hours,
        idle_minutes=opts.idle_minutes,
        guard_period_s=guard_period_s(opts),
        runs_dir=f"/home/{login_user}/{WORKDIR}/runs",
    )


USER_DATA_LIMIT = 16384  # bytes, as EC2 takes them (before its base64)


def user_data_payload(text: str) -> bytes:
    """The user-data as sent to EC2: gzipped (cloud-init unpacks gzip user-data, on EC2 and in
    the sandbox alike), since the plain script (guard, agent, bootstrap) is over EC2's 16 KB."""
    import gzip

    return gzip.compress(text.encode(), 9, mtime=0)


def user_data_text(payload: bytes) -> str:
    """The script back from what EC2 holds (plain text from before trainbox gzipped it, too)."""
    import gzip

    return (gzip.decompress(payload) if payload[:2] == b"\x1f\x8b" else payload).decode()


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
            user_data=user_data_payload(user_data(opts, image.login_user)),
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
        workdir=WORKDIR,
        endpoint_url=cloud.endpoint_url if cloud.sandbox else None,
        ami=image.id,
        public_ip=inst.public_ip,
        launched_at=inst.launch_time.timestamp() if inst.launch_time else time.time(),
        price_per_hour=price,
    )
    if cloud.sandbox:
        attach_sandbox_box(box, ec2, opts.sandbox_box, say)
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


def attach_sandbox_box(box: BoxState, ec2=None, kind: str | None = None, say: Callable[[str], None] = lambda s: None) -> None:
    """Point the state at the sandbox's box (booted now) instead of moto's fake IP."""
    from pathlib import Path

    d = sandbox.box_dir(box.name)
    if (d / "kind").exists():
        existing = sandbox.kind_of(box.name)
        if kind and kind != existing:
            say(f"box '{box.name}' is a {existing} box already: keeping it (`down` first for a {kind} box)")
        kind, why = existing, "the box has it"
    else:
        kind, why = sandbox.choose_kind(kind)
    say(f"sandbox box: {kind} ({why})")
    if kind == "container":
        return _attach_container(box, ec2, say)
    d.mkdir(parents=True, exist_ok=True)
    (d / "kind").write_text("process\n")
    server = sandbox.start_box(box.name, Path(box.key_path))
    box.ssh_host, box.ssh_port = server.address
    box.ssh_user = getpass.getuser()
    box.workdir = str(sandbox.box_workdir(box.name))
    # The sandbox box is this machine: its trainbox environment is this Python.
    box.python = sys.executable
    hostkeys.pin(box.ssh_host, box.ssh_port, [server.host_key])


def _attach_container(box: BoxState, ec2, say: Callable[[str], None]) -> None:
    """Boot the container box: its first boot runs the instance's user-data as EC2's does."""
    from pathlib import Path

    from . import container, rootfs, sshd

    d = sandbox.box_dir(box.name)
    base = rootfs.ensure(say)
    if not container.created(d):
        container.create(d, box.instance_id, sshd.public_key_line(Path(box.key_path)),
                         container.user_data_of(ec2, box.instance_id))
        (d / "kind").write_text("container\n")
    t0 = time.monotonic()
    server = sandbox.start_box(box.name, Path(box.key_path))
    say(f"container box booted: SSH on 127.0.0.1:{server.port} after {time.monotonic() - t0:.1f}s "
        f"(login {container.LOGIN_USER}, user-data run by cloud-init; console: {container.console_log(d)})")
    box.ssh_host, box.ssh_port = server.address
    box.ssh_user = container.LOGIN_USER
    box.workdir = WORKDIR  # relative to the login user's home, as on AWS
    box.python = None  # trainbox's own env, built by the boot-time bootstrap, as on AWS
    # Read from the box's own disk, where cloud-init wrote them: pinned, not trusted on first use.
    hostkeys.pin(box.ssh_host, box.ssh_port, list(server.host_keys))
    say("host keys pinned from the box's disk: " + ", ".join(hostkeys.fingerprint(k) for k in server.host_keys))


def _price_overrides() -> dict:
    from .config import price_overrides

    return price_overrides()
