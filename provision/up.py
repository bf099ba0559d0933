"""``up``: preflight, network, key, instance, SSH; idempotent per box name.

Every resource is tagged at creation, so whatever step fails, ``down``
finds and removes what was made; running ``up`` again reuses it.

Why ~400 lines: the steps of ``up`` in their order (options, user-data,
launch per node, SSH, host keys). A cloud standing in for AWS runs the
same steps; its machines follow them through ``cloud.settle``.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import templates
from box.layout import DEFAULT_WORKDIR, BoxLayout
from common import hostkeys, paths, state
from common.aws import Cloud, aws_errors
from common.errors import CloudError, RemoteError, UsageError, name_flag
from common.state import BoxState, Node

from . import ami as amis
from . import images, instance, keys, network, placement, preflight, prices, recover
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
    # The kind of machine a stand-in cloud makes for the instance (its CLI's `--sandbox-box`:
    # container, process, or None: the best this machine has); AWS has its instance.
    sandbox_box: str | None = None
    # The box's first-boot setup of trainbox's environment (the bootstrap the
    # CLI renders with remote/setup.py), started by user-data; None: none.
    bootstrap: str | None = None
    # That environment's spec (remote/setup.py SetupOptions.spec_id()): `up`
    # boots a trainbox image of it when there is one; None: never an image.
    env_spec: str | None = None
    # Instances under the box's name (a multi-node run's nodes): with more
    # than one, a cluster placement group and TCP between them.
    nodes: int = 1
    # --recover (provision/recover.py): the box is an Auto Scaling group of one spot instance
    # over these types (None: the type and its nearest peers) in every zone that offers them.
    recover: bool = False
    instance_types: list[str] | None = None


def guard_period_s(opts: UpOptions) -> int:
    """How often the guard looks: each minute, or a quarter of a limit under 4 min (at least 5 s)."""
    shortest = min(opts.max_hours * 3600, opts.idle_minutes * 60)
    return int(max(5, min(60, shortest / 4)))


AGENT_MODULES = ("__init__", "layout", "runfolder", "agent")
# A --recover box's agent also mirrors its runs to S3 and restores them (box/keep.py over box/s3.py).
STORE_MODULES = ("s3", "keep", "release")  # release: the guard sets the group to 0 before it shuts down


def agent_files(store: bool = False) -> dict[str, str]:
    """box/agent.py and what it imports (standard library otherwise), installed by the
    user-data as the package box/ (importing box costs nothing: no TensorFlow, no boto3);
    their comments and docstrings stay home (AWS caps user-data at 16 KB). store: a
    --recover box's, with the modules that keep its runs in S3."""
    import box

    modules = AGENT_MODULES + (STORE_MODULES if store else ())
    return {f"{m}.py": stripped_python(box.source(m)) for m in modules}


def stripped_shell(script: str) -> str:
    """The same shell script without its whole-line comments (a ``#!`` line is kept): the box runs
    the same commands; the comments stay in the template (AWS caps user-data at 16 KB)."""
    return "\n".join(line for line in script.split("\n") if not re.match(r"\s*#(?!!)", line))


def stripped_python(source: str) -> str:
    """The same Python with no comments, each docstring cut to its first line, no blank lines
    (a line inside a multi-line string is kept as it is)."""
    import ast
    import io
    import tokenize

    lines = source.splitlines()
    keep_as_is: set[int] = set()  # 0-based lines inside a multi-line string
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col].rstrip()
        elif tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
            keep_as_is.update(range(tok.start[0], tok.end[0]))  # its second line on
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if not (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            continue
        doc = body[0]
        assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)
        assert doc.end_lineno is not None
        first = (doc.value.value.strip().splitlines() or [""])[0]
        lines[doc.lineno - 1] = lines[doc.lineno - 1][: doc.col_offset] + repr(first)
        for i in range(doc.lineno, doc.end_lineno):
            lines[i] = ""
            keep_as_is.discard(i)
    out = [l for i, l in enumerate(lines) if i in keep_as_is or l.strip()]
    text = "\n".join(out) + "\n"
    compile(text, "<stripped>", "exec")  # still Python
    return text


def user_data(opts: UpOptions, login_user: str, store: dict | None = None) -> str:
    """The first-boot script; its box paths are the default layout's, under the
    login user's home as the box's passwd has it (user-data looks it up). store: a
    --recover box's {"url": "s3://bucket/prefix/", "region"}, which its agent keeps runs in."""
    extra: dict = {} if opts.bootstrap is None else {"bootstrap": opts.bootstrap}
    if store is not None:
        # No room for both the bootstrap and the store's modules in AWS's 16 KB: a --recover box's
        # bootstrap is in its store (recover.up_group puts it), which its agent runs at first boot.
        extra.pop("bootstrap", None)
        if any(c.isspace() or c in "'\"\\$`" for c in "".join(store.values())):
            raise ValueError(f"the store {store} cannot be written into an environment file")
        extra["store"] = store
    # Its whole-line comments (the template's, the guard's, the bootstrap's) stay home: AWS caps
    # user-data at 16 KB. Its first two lines stay: the shebang, and what this script is.
    shebang, header, rest = templates.render(
        "user-data.sh.j2",
        **extra,
        agent_files=agent_files(store is not None),
        layout=BoxLayout(DEFAULT_WORKDIR),
        login_user=login_user,
        name=opts.name,
        max_hours=opts.max_hours,
        idle_minutes=opts.idle_minutes,
        guard_period_s=guard_period_s(opts),
    ).split("\n", 2)
    return "\n".join((shebang, header, stripped_shell(rest)))


USER_DATA_LIMIT = 16384  # bytes, as EC2 takes them (before its base64)


def user_data_payload(text: str) -> bytes:
    """The user-data as sent to EC2: gzipped (cloud-init unpacks gzip user-data, on EC2 and on
    a stand-in alike), since the plain script (guard, agent, bootstrap) is over EC2's 16 KB."""
    import gzip

    payload = gzip.compress(text.encode(), 9, mtime=0)
    if len(payload) > USER_DATA_LIMIT:  # AWS would refuse the instance (or the template) it is for
        raise UsageError(
            f"the box's first-boot script is {len(payload):,} bytes gzipped, over AWS's {USER_DATA_LIMIT:,}",
            "use a shorter --name; otherwise this is a trainbox bug: please report it",
        )
    return payload


def user_data_text(payload: bytes) -> str:
    """The script back from what EC2 holds (plain text from before trainbox gzipped it, too)."""
    import gzip

    return (gzip.decompress(payload) if payload[:2] == b"\x1f\x8b" else payload).decode()


def _root_device(ec2, image_id: str) -> str:
    images = ec2.describe_images(ImageIds=[image_id])["Images"]
    return images[0].get("RootDeviceName", "/dev/sda1") if images else "/dev/sda1"


def launch_in_some_zone(
    ec2,
    opts: UpOptions,
    zones: list[str],
    image: amis.Image,
    key_name: str,
    ssh_cidr: str,
    say,
    node: int = 0,
    placement_group: str | None = None,
) -> instance.Instance:
    """Launch node ``node`` in the first zone with capacity, trying each offered zone in turn."""
    from botocore.exceptions import ClientError

    last = None
    for zone in zones:
        net = network.ensure_network(ec2, opts.name, zone, ssh_cidr, intra=opts.nodes > 1)
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
            node=node,
            placement_group=placement_group,
        )
        try:
            return instance.launch(ec2, spec)
        except ClientError as e:
            if not instance.is_capacity_error(e):
                raise
            say(
                f"no {opts.instance_type} capacity in {zone}"
                + (f" for node {node}" if opts.nodes > 1 else "")
                + ("; trying the next zone" if zone != zones[-1] else "")
            )
            last = e
    assert last is not None, "zones is never empty (preflight.check_offered)"
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
    raise RemoteError(
        f"the box at {host}:{port} did not answer SSH within {timeout:.0f}s",
        "check `python -m provision state`, then retry `up`",
    )


def pin_host_key(ec2, instance_id: str, host: str, port: int = 22, scan=hostkeys.scan) -> tuple[str, list[str]]:
    """Pin the box's host keys; return how ("console", "console-replaced",
    "pinned" or "first-use") and the keys.

    The console output, when AWS has it, comes from the box itself over AWS's
    API, so it cannot be spoofed by the network: it wins, and replacing a
    different earlier pin is said ("console-replaced"). Without it, a key
    already pinned must be the one the server presents now, or RemoteError:
    a pin is never replaced by what answers on the network. With neither, the
    key presented now is pinned (trust on first use) and its fingerprint shown.
    """
    before = hostkeys.pinned(host, port)
    lines = instance.console_host_keys(ec2, instance_id)
    if lines:
        hostkeys.pin(host, port, lines)
        return ("console-replaced" if before and not set(before) & set(lines) else "console"), lines
    offered = scan(host, port)
    if before:
        if set(offered) & set(before):
            return "pinned", before
        raise RemoteError(
            f"the host key of {host}:{port} changed (pinned {', '.join(map(hostkeys.fingerprint, before))}, "
            f"offered {', '.join(map(hostkeys.fingerprint, offered))}): not replacing the pin",
            f"if the box was rebuilt, remove its lines from {paths.known_hosts()} and rerun `up`; otherwise do not connect",
        )
    hostkeys.pin(host, port, offered)
    return "first-use", offered


def up(
    cloud: Cloud,
    opts: UpOptions,
    say: Callable[[str], None],
    latest_ami: Callable[[], str | None] | None = None,
    detect_cidr=caller_cidr,
) -> BoxState:
    ec2 = cloud.client("ec2")
    # Bad input fails before any AWS call.
    opts = recover.check_options(opts)
    if cloud.ssh_cidr:
        cidr = cloud.ssh_cidr  # a cloud on this machine: SSH from here only
    else:
        cidr, open_to_all = check_cidr(opts.ssh_cidr) if opts.ssh_cidr else (detect_cidr(), False)
        if open_to_all:
            say("warning: --ssh-cidr 0.0.0.0/0 opens SSH to the whole internet")
    with aws_errors("launch the box"):
        say(f"checking AWS ({cloud.where})")
        preflight.check_credentials(cloud)
        preflight.check_region(cloud)
        zones = preflight.check_offered(cloud, opts.instance_type)
        group_types: list[str] = []
        if opts.recover:
            # The group's types and every zone that offers one of them, before anything is made.
            group_types, zones = recover.offered(
                ec2, recover.instance_types(opts.instance_type, opts.instance_types), bool(opts.instance_types)
            )
        quota = preflight.check_quota(cloud, opts.instance_type, opts.spot, opts.nodes) if cloud.has_quotas else None
        if quota and quota.limit is None:
            say(f"warning: could not read the '{quota.name}' quota; launching anyway")
        # A trainbox image of this environment first (provision/images.py); --ami overrides.
        if opts.ami:
            baked, why = images.get(ec2, opts.ami), "--ami"
        elif opts.env_spec:
            baked, why = images.choose(ec2, opts.instance_type, cloud.box_build, opts.env_spec)
        else:
            baked, why = None, "no environment spec given: the DLAMI"
        if baked is not None:
            image = baked.as_ami()
        else:
            # The cloud's own base image (a stand-in's API may list no DLAMI by SSM), else AWS's newest DLAMI.
            image = (None if opts.ami else cloud.base_image(ec2)) or amis.resolve(
                ec2, opts.instance_type, opts.ami, latest_ami
            )
        say(f"AMI {image.id} ({image.name}): {why}")

        insts = _live_nodes(ec2, opts)
        # A live instance trusts only its own key: never replace that one.
        key_name, key_file = keys.ensure_key_pair(ec2, opts.name, insts[0].id if insts else None)
        made: dict = {}
        if opts.recover:
            inst, made = recover.up_group(
                cloud,
                opts,
                group_types,
                zones,
                image,
                key_name,
                cidr,
                insts,
                # Rendered once the store is made: the box's agent is told where its runs are kept.
                lambda store: user_data_payload(user_data(opts, image.login_user, store)),
                _root_device(ec2, image.id),
                say,
            )
            insts = [inst]
        else:
            insts = _launch_or_reuse(ec2, opts, insts, zones, image, key_name, cidr, say)
        insts = sorted((instance.wait(ec2, i.id, "running") for i in insts), key=lambda i: i.node)

    price = prices.price_per_hour(opts.instance_type, _price_overrides())
    first = insts[0]
    box = BoxState(
        name=opts.name,
        region=cloud.region,
        instance_id=first.id,
        instance_type=first.type,
        ssh_host=first.public_ip or "",
        ssh_user=image.login_user,
        key_path=str(key_file),
        workdir=DEFAULT_WORKDIR,
        endpoint_url=cloud.state_endpoint,
        ami=image.id,
        public_ip=first.public_ip,
        launched_at=first.launch_time.timestamp() if first.launch_time else time.time(),
        price_per_hour=price,
        private_ip=first.private_ip,
        nodes=[Node(i.node, i.id, i.public_ip or "", 22, i.private_ip, i.public_ip) for i in insts[1:]],
    )
    if opts.recover:
        recover.record(box, opts, first, made)
    # The instances run: a cloud standing in for AWS boots its machines for them (AWS: nothing).
    cloud.settle(opts.name, say, box=box, launch=opts)
    if not cloud.own_addresses:
        _carry_pin(opts.name, box)
    state.save(box)
    if not cloud.own_addresses and opts.wait:
        for node in box.node_list():
            _ssh_and_pin(ec2, node, say, f"node {node.index} " if box.node_count > 1 else "")
    return box


def _launch_or_reuse(
    ec2, opts: UpOptions, insts: list[instance.Instance], zones: list[str], image, key_name: str, cidr: str, say
) -> list[instance.Instance]:
    """Reuse the box's live instances (started if stopped) and launch the nodes it lacks."""
    group = None
    if opts.nodes > 1:
        existed = placement.find(ec2, opts.name)
        group = existed or placement.ensure(ec2, opts.name)
        if insts and existed is None:
            say(
                f"{', '.join(i.id for i in insts)} ran before placement group {group}: it stays outside it "
                "(the nodes launched now are in it)"
            )

    for inst in insts:
        say(f"reusing {inst.id}" + (f" (node {inst.node})" if opts.nodes > 1 else "") + f" ({inst.state})")
    if insts:
        # Reuse the box; bring its security group back to this laptop's address.
        network.ensure_network(ec2, opts.name, insts[0].zone, cidr, intra=opts.nodes > 1)
        for inst in insts:
            if inst.state == "stopping":
                instance.wait(ec2, inst.id, "stopped")
        stopped = [i.id for i in insts if instance.get(ec2, i.id).state == "stopped"]
        if stopped:
            ec2.start_instances(InstanceIds=stopped)
    have = {i.node for i in insts}
    missing = [k for k in range(opts.nodes) if k not in have]
    if missing:
        many = f"{len(missing)} × " if len(missing) > 1 else ""
        where = f"; placement group {group}" if group else ""
        say(f"launching {many}{opts.instance_type} (ssh from {cidr} only{where})")
    for k in missing:
        # A cluster placement group is in one zone: the first node placed pins it.
        in_zones = [insts[0].zone] if insts else zones
        insts.append(
            launch_in_some_zone(ec2, opts, in_zones, image, key_name, cidr, say, node=k, placement_group=group)
        )
    return insts


def _live_nodes(ec2, opts: UpOptions) -> list[instance.Instance]:
    """The box's live instances, node 0 first; a dying one is let go (launched anew)."""
    insts = []
    for inst in instance.find_nodes(ec2, opts.name):
        if inst.state == "shutting-down":
            instance.wait(ec2, inst.id, "terminated")
        else:
            insts.append(inst)
    seen: dict[int, str] = {}
    for inst in insts:
        if inst.node in seen:
            raise CloudError(
                f"box '{opts.name}' has two instances tagged node {inst.node}: {seen[inst.node]}, {inst.id}",
                f"run `python -m provision down{name_flag(opts.name)}`, then `up` again",
            )
        seen[inst.node] = inst.id
    beyond = sorted(k for k in seen if k >= opts.nodes)
    if beyond:
        raise UsageError(
            f"box '{opts.name}' has {len(seen)} node(s) (up to node {beyond[-1]}); `up --nodes {opts.nodes}` removes none",
            f"pass --nodes {beyond[-1] + 1}, or `python -m provision down{name_flag(opts.name)}` first",
        )
    return insts


def _ssh_and_pin(ec2, node: Node, say: Callable[[str], None], label: str) -> None:
    """Wait until the node's SSH answers, then pin its host key (and say how)."""
    if not node.ssh_host:
        raise CloudError(
            f"{label}{node.instance_id} has no public IP", "run `python -m provision down`, then `up` again"
        )
    say(f"waiting for SSH on {label}{node.ssh_host}")
    wait_for_ssh(node.ssh_host, 22)
    how, lines = pin_host_key(ec2, node.instance_id, node.ssh_host)
    fingerprints = ", ".join(hostkeys.fingerprint(l) for l in lines)
    if how == "console":
        say(f"host key pinned from the console output: {fingerprints}")
    elif how == "console-replaced":
        say(
            f"warning: the box's host key differs from the one pinned before; pinned the console output's: {fingerprints}"
        )
    elif how == "pinned":
        say(f"host key as pinned before: {fingerprints}")
    else:
        say(f"host key pinned on first use: {fingerprints} (compare with the console output if in doubt)")


def _carry_pin(name: str, box: BoxState) -> None:
    """A reused box may have a new address since the last state: each node's pin moves with it."""
    try:
        before = state.load(name)
    except state.CorruptState:
        before = None
    if before is None:
        return
    was = {n.index: n for n in before.node_list()}
    for node in box.node_list():
        old = was.get(node.index)
        # Only the same instance's pin moves: another instance (a --recover group's replacement) has other keys.
        if old is not None and old.instance_id == node.instance_id and old.ssh_host and node.ssh_host:
            hostkeys.move((old.ssh_host, old.ssh_port), (node.ssh_host, 22))


def _price_overrides() -> dict:
    from .config import price_overrides

    return price_overrides()
