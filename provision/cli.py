"""``python -m provision``: launch, look after and tear down a GPU box.

Thin on purpose: parse, call one library function, print. Why ~330 lines:
eleven commands (up, state, start, stop, ip, ssh, nb, ls, aliases,
ssh-config, down) each with its argparse and its printing; the work is in
the library modules.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys

from box.layout import DEFAULT_WORKDIR, BoxLayout
from common import paths, procs, state
from common.aws import Cloud
from common.checks import name_arg, range_arg
from common.cliutil import EXIT_CODES_EPILOG, Parser, positive_float, positive_int, run_cli, sandbox_note, say
from common.errors import EX_INTERRUPTED, RemoteError, UsageError, name_flag
from common.state import no_box
from sandbox import boxes as sandbox

from . import config, lifecycle

PROG = "python -m provision"


def cloud_for(args, load=state.load, named: bool = True) -> Cloud:
    """The AWS a command talks to, picked here only: the box's own (from its state), the sandbox
    (asked with --sandbox, or the only place the name is known: said once, on stderr), or AWS.
    ``named``: the command is about the box named, which, known nowhere here and with no AWS
    credentials to look for it (and no --region asking for AWS), is no box."""
    asked = getattr(args, "sandbox", False)
    box = load(args.name)
    if box is not None:
        if asked and not box.sandbox:
            raise _on_aws(box)
        if box.sandbox and not asked:
            sandbox_note(args.name)
        return lifecycle.cloud_of(box)
    if asked or args.name in sandbox.sandbox_boxes():
        if not asked:
            sandbox_note(args.name)
        cloud = _sandbox_cloud()
        if cloud is None:
            raise UsageError("the sandbox is not running", f"start it with `{PROG} up --sandbox`")
        return cloud
    if named and getattr(args, "region", None) is None:
        from common.aws import has_credentials

        if not has_credentials():
            raise no_box(args.name, "AWS was not checked: no AWS credentials")
    return Cloud(config.setting("region", getattr(args, "region", None)))


def _on_aws(box: state.BoxState) -> UsageError:
    return UsageError(f"box '{box.name}' is on AWS ({box.region}), not in the sandbox", "drop --sandbox")


def _sandbox_cloud() -> Cloud | None:
    """The sandbox's AWS, or None when it is not running (its moto holds its cloud in memory: nothing is left)."""
    endpoint = sandbox.endpoint()
    return Cloud(sandbox.REGION, endpoint, sandbox=True) if endpoint else None


# ---------------------------------------------------------------- commands


def first_boot_bootstrap() -> str | None:
    """The bootstrap user-data starts at first boot, or None: any process on the
    box can read its user-data (the instance metadata service), so an index with
    credentials is left to the first `remote` command, which installs over SSH."""
    from remote import setup  # composition: the CLI joins the halves

    env = setup.SetupOptions.from_env()
    return None if env.has_credentials else setup.render_bootstrap(DEFAULT_WORKDIR, env)


def cmd_up(args) -> int:
    from remote import setup  # the bootstrap `remote setup` runs too, for user-data at first boot

    from .up import UpOptions, up

    known = state.load(args.name)
    if known is not None and known.sandbox != args.sandbox:
        if args.sandbox:
            raise _on_aws(known)
        sandbox_note(args.name)  # a name is one box: its `up` starts or reuses it where it is
        args.sandbox = True
    if args.sandbox:
        cloud = Cloud(sandbox.REGION, sandbox.endpoint() or sandbox.ensure_moto(), sandbox=True)
    else:
        cloud = Cloud(config.setting("region", args.region))
    opts = UpOptions(
        name=args.name,
        instance_type=config.setting("instance_type", args.instance_type),
        spot=args.spot,
        ssh_cidr=args.ssh_cidr,
        max_hours=config.setting("max_hours", args.max_hours),
        idle_minutes=config.setting("idle_minutes", args.idle_minutes),
        volume_gb=config.setting("volume_gb", args.volume_gb),
        ami=args.ami,
        wait=not args.no_wait,
        sandbox_box=args.sandbox_box,
        bootstrap=first_boot_bootstrap(),
        env_spec=setup.SetupOptions.from_env().spec_id(),
        nodes=args.nodes,
        recover=args.recover,
        instance_types=args.instance_types,
    )
    if args.sandbox_box and not args.sandbox:
        raise UsageError("--sandbox-box needs --sandbox", f"run `{PROG} up --sandbox --sandbox-box {args.sandbox_box}`")
    latest = None
    if not args.sandbox:
        from .ami import ssm_lookup

        latest = lambda: ssm_lookup(cloud.client("ssm"))  # noqa: E731
    try:
        box = up(cloud, opts, say, latest_ami=latest)
    except UsageError:
        raise  # bad input is refused before anything is made
    except BaseException:
        say(f"`up` did not finish: everything it made is tagged; `{PROG} down{name_flag(args.name)}` removes it")
        raise
    n = box.node_count
    if box.price_per_hour is None:
        price = "price unknown"
    else:
        price = f"${box.price_per_hour * n:.3f}/h" + (f": {n} × ${box.price_per_hour:.3f}" if n > 1 else "")
    if n == 1:
        where = f"{box.ssh_host}:{box.ssh_port}" if box.sandbox else box.ssh_host
        print(f"box '{box.name}' is up: {box.instance_id} {box.instance_type} at {where} ({price})")
    else:
        print(f"box '{box.name}' is up: {n} nodes of {box.instance_type} ({price})")
        for node in box.node_list():
            on = box.node(node.index)
            where = f"{on.ssh_host}:{on.ssh_port}" if box.sandbox else on.ssh_host
            print(f"  node {node.index}: {node.instance_id} at {where}, private {node.private_ip or '-'}")
    say(f"next: `remote train --epochs 3{name_flag(args.name)}`; when done: `{PROG} down{name_flag(args.name)}`")
    return 0


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    m = int(seconds // 60)
    return f"{m // 60}h{m % 60:02d}m"


def cmd_state(args) -> int:
    s = lifecycle.status(cloud_for(args), args.name)
    if args.json:
        print(json.dumps(s.as_dict(), indent=2))
        return 0
    price = f"${s.price_per_hour:.3f}/h" if s.price_per_hour is not None else "-"
    cost = f"${s.cost_so_far:.2f}" if s.cost_so_far is not None else "-"
    rows = [
        ("name", s.name + (" (sandbox)" if s.sandbox else "")),
        ("instance", s.instance_id),
        ("type", s.instance_type),
        ("state", s.state),
        ("address", s.address or "-"),
        ("uptime", _duration(s.uptime_s)),
        ("price", price),
        ("cost so far", cost),
    ] + ([("spot", s.spot)] if s.spot else [])
    if len(s.nodes) > 1:
        rows.insert(2, ("nodes", str(len(s.nodes))))
        rows += [
            (f"node {n.index}", f"{n.instance_id} {n.state} {n.address or '-'} (private {n.private_ip or '-'})")
            for n in s.nodes
        ]
    for k, v in rows:
        print(f"{k:<12} {v}")
    return 0


def cmd_start(args) -> int:
    box = lifecycle.start(cloud_for(args), args.name)
    where = f"{box.ssh_host}:{box.ssh_port}" if box.sandbox else box.ssh_host
    print(f"box '{args.name}' is running at {where}")
    return 0


def cmd_stop(args) -> int:
    inst = lifecycle.stop(cloud_for(args), args.name)
    n = lifecycle.status(cloud_for(args), args.name).nodes
    disks = (
        "the disk is kept and still bills"
        if len(n) == 1
        else f"all {len(n)} nodes; their disks are kept and still bill"
    )
    print(f"box '{args.name}' is {inst.state} ({disks} a little; `{PROG} down` removes it)")
    return 0


def _ready_box(args) -> state.BoxState:
    """The box, running; with ``--node K``, as seen on node K (its instance and address)."""
    s = lifecycle.status(cloud_for(args), args.name)
    if s.state != "running":
        why = s.state if s.state != "mixed" else ", ".join(f"node {n.index} {n.state}" for n in s.nodes)
        raise UsageError(f"box '{args.name}' is {why}", f"start it with `{PROG} start{name_flag(args.name)}`")
    box = state.load(args.name)
    if box is None:
        raise no_box(args.name)
    return box.node(getattr(args, "node", 0))


def cmd_ip(args) -> int:
    print(_ready_box(args).ssh_host)
    return 0


def _ssh_binary() -> str:
    ssh = shutil.which("ssh")
    if ssh is None:
        raise UsageError("OpenSSH's ssh client is not installed", "install openssh-client")
    return ssh


def ssh_argv(box: state.BoxState, extra: list[str]) -> list[str]:
    from .sshcmd import ssh_argv as build

    return build(_ssh_binary(), box, str(paths.known_hosts()), extra)


def ssh_command(args) -> list[str]:
    """The ssh command line `ssh` execs: to the box, or with ``--node K`` to its node K."""
    return ssh_argv(_ready_box(args), [a for a in args.ssh_args if a != "--"])


def cmd_ssh(args) -> int:
    argv = ssh_command(args)
    sys.stdout.flush()
    os.execv(argv[0], argv)
    return 0  # not reached


def cmd_nb(args) -> int:
    import secrets
    import subprocess

    from . import sshcmd

    box = _ready_box(args)
    if args.local_port and not procs.port_free(args.local_port):
        raise UsageError(f"local port {args.local_port} is taken on this machine", "pick another with --local-port")
    ssh = _ssh_binary()
    known = str(paths.known_hosts())
    from remote import orchestrate, records  # composition: the CLI joins the halves

    # The latest `remote run`'s pushed project (and its environment), else the home.
    root, project_env = orchestrate.notebook_place(records.latest(args.name), box.workdir)
    script = sshcmd.jupyter_start_script(
        sshcmd.env_python(box),
        args.port,
        BoxLayout(box.workdir).jupyter,
        secrets.token_hex(24),
        env=None if box.python else project_env or BoxLayout(box.workdir).env_link,
        root_dir=root,
    )
    # The script carries the token: it goes on ssh's stdin, never on a command line.
    p = subprocess.run(sshcmd.ssh_argv(ssh, box, known, ["bash", "-s"]), input=script, capture_output=True, text=True)
    if p.returncode != 0:
        why = (p.stderr.strip().splitlines() or [f"ssh exited {p.returncode}"])[-1]
        raise RemoteError(f"could not start Jupyter on box '{args.name}' ({why})")
    port_text, token = p.stdout.strip().splitlines()[-1].split()
    port = int(port_text)
    if port != args.port:
        say(f"Jupyter already runs on the box's port {port}: the tunnel goes there")
    wanted = local = args.local_port or port
    if not procs.port_free(wanted):
        # A Jupyter of the laptop's own often holds 8888 (and in the sandbox,
        # where the box is this machine, the box's Jupyter holds its port).
        local = procs.free_port()
        say(f"local port {wanted} is taken on this machine: the tunnel uses {local} (choose with --local-port)")
    print(f"Jupyter on box '{args.name}': http://127.0.0.1:{local}/lab?token={token}", flush=True)
    say("tunnel open (port never opened to the internet); Ctrl-C closes it, Jupyter keeps running on the box")
    return _hold_tunnel(sshcmd.tunnel_argv(ssh, box, known, port, local))


class _Ended(Exception):
    def __init__(self, signum: int):
        self.signum = signum


def _hold_tunnel(argv: list[str]) -> int:
    """The tunnel's ssh, a child in a session of its own (a terminal's Ctrl-C reaches this process
    alone), until it ends or the user ends it: Ctrl-C (exit 130), TERM or HUP (128+N) close it and
    say so. An ssh that ends by itself (the box went away) is a RemoteError."""
    import signal
    import subprocess

    def ended(signum, frame):
        raise _Ended(signum)

    tunnel = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    previous = {s: signal.signal(s, ended) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        code = tunnel.wait()
    except (KeyboardInterrupt, _Ended) as e:
        tunnel.terminate()
        tunnel.wait()
        say("notebook tunnel closed (Jupyter keeps running on the box)")
        return EX_INTERRUPTED if isinstance(e, KeyboardInterrupt) else 128 + e.signum  # the shell's 128+N
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if tunnel.poll() is None:  # a second Ctrl-C while it closed
            tunnel.kill()
            tunnel.wait()
    if code != 0:
        raise RemoteError(f"the notebook tunnel closed: ssh exited {code}", f"is the box still up? `{PROG} state` says")
    say("notebook tunnel closed (Jupyter keeps running on the box)")
    return 0


def _ls_cloud(args) -> tuple[Cloud | None, str | None]:
    """Where `ls` looks, and why when that was not asked: --sandbox, --region/--all-regions: there;
    else the sandbox when the box named is a sandbox box, or when there are no AWS credentials,
    else AWS. None: the sandbox, not running (nothing of it is left)."""
    from common.aws import has_credentials

    if args.sandbox:
        return _sandbox_cloud(), None
    if args.region or args.all_regions:
        return Cloud(config.setting("region", args.region)), None
    box = _state_or_warn(args.name)
    if box is not None and box.sandbox:
        why = f"box '{args.name}' is a sandbox box; AWS was not checked: `{PROG} ls --region REGION` looks there"
        return lifecycle.cloud_of(box), why
    if box is None and not has_credentials():
        return _sandbox_cloud(), "no AWS credentials: AWS was not checked"
    others = sandbox.sandbox_boxes() if sandbox.endpoint() else []
    if others:
        say(f"the sandbox has box(es) too ({', '.join(others)}): `{PROG} ls --sandbox` lists them")
    return Cloud(config.setting("region", None)), None


def cmd_ls(args) -> int:
    from common.aws import aws_errors

    from .inventory import tagged_resources

    base, why = _ls_cloud(args)
    if base is None:
        if args.json:
            print("[]")
        else:
            also = f"; {why}" if why else ""
            print(
                "nothing is up: no boxes, nothing left billing in the sandbox "
                f"(the sandbox is not running; `up --sandbox` starts it{also})"
            )
        return 0
    if why:
        say(f"listing the sandbox ({why})")
    regions = [base.region]
    if args.all_regions and not base.sandbox:
        with aws_errors("list regions"):
            regions = sorted(r["RegionName"] for r in base.client("ec2").describe_regions()["Regions"])
    found = []
    for region in regions:
        cloud = Cloud(region, base.endpoint_url, base.sandbox)
        with aws_errors(f"list resources in {region}"):
            found += tagged_resources(cloud.client("ec2"), region, autoscaling=cloud.client("autoscaling"))
    if args.json:
        print(json.dumps([r.__dict__ for r in found], indent=2))
        return 0
    if not found:
        if base.sandbox:
            where = " in the sandbox"
        else:
            where = "" if args.all_regions else f" in {base.region} (other regions: --all-regions)"
        print(f"nothing is up: no boxes, nothing left billing{where} (nothing tagged trainbox:managed=true)")
        return 0
    print(f"{'box':<12} {'kind':<17} {'id':<24} {'region':<12} {'state':<10} detail")
    for r in found:
        print(f"{r.box:<12} {r.kind:<17} {r.id:<24} {r.region:<12} {r.state or '-':<10} {r.detail}")
    return 0


def cmd_aliases(args) -> int:
    import templates

    # This interpreter, by absolute path: the aliases work in any shell,
    # whether or not the venv trainbox lives in is activated there.
    prog = f"{shlex.quote(sys.executable)} -m provision"
    print(templates.render("aliases.sh.j2", name=args.name, name_flag=name_flag(args.name), prog=prog), end="")
    return 0


def cmd_ssh_config(args) -> int:
    import templates

    box = state.load(args.name)
    if box is None:
        raise no_box(args.name)
    path = paths.home() / "ssh_config"
    text = templates.render(
        "ssh_config.j2",
        name=box.name,
        alias=f"trainbox-{box.name}",
        host=box.ssh_host,
        port=box.ssh_port,
        user=box.ssh_user,
        identity=box.key_path,
        known_hosts=paths.known_hosts(),
        path=path,
    )
    paths.write_atomic(path, text)
    print(f"wrote {path}; add `Include {path}` to ~/.ssh/config, then `ssh trainbox-{box.name}`")
    return 0


def _state_or_warn(name: str) -> state.BoxState | None:
    """The box's state; a corrupt one is named and set aside: `down` finds the box by its tags."""
    try:
        return state.load(name)
    except state.CorruptState as e:
        say(f"warning: {e.what}; going on without it (AWS tags find the box)")
        return None


def cmd_down(args) -> int:
    cloud = cloud_for(args, load=_state_or_warn)
    interactive = not args.yes and sys.stdin.isatty()
    if interactive and not _ask(f"delete box '{args.name}' and everything tagged for it? [y/N] "):
        say("nothing deleted")
        return UsageError.exit_code  # declined: nothing done
    if not args.no_pull and _state_or_warn(args.name) is not None:
        from remote.results import pull_unfetched

        left = pull_unfetched(args.name, say)
        if left and not args.yes:
            what = f"{len(left)} run(s) not brought home"
            if not interactive:
                raise RemoteError(
                    f"{what}: nothing deleted",
                    f"bring them home as said above, or `{PROG} down{name_flag(args.name)} --yes` deletes anyway",
                )
            if not _ask(f"{what}: delete box '{args.name}' anyway? [y/N] "):
                say("nothing deleted")
                return UsageError.exit_code
    from common.aws import aws_errors

    from . import images

    # Before the box goes: in the sandbox, `destroy` stops moto once nothing of ours is left there.
    with aws_errors("list the box's images"):
        kept = images.list_images(cloud.client("ec2"), args.name)
    if kept and args.images:
        images.remove_images(cloud, [i.id for i in kept], say)
    removed = lifecycle.destroy(cloud, args.name, say, keep_checkpoints=args.keep_checkpoints)
    print(f"box '{args.name}' is gone ({len(removed)} resources deleted, each verified)")
    if kept and args.images:
        print(f"removed the box's images {', '.join(i.id for i in kept)} and their snapshots, each verified gone")
    elif kept:
        cost = sum(i.monthly_cost(images.gb_month_price()) for i in kept)
        say(
            f"kept the box's images {', '.join(i.id for i in kept)} (${cost:.2f}/month): the next `up` boots from them; "
            f"`{PROG} image rm IMAGE` or `down --images` removes them"
        )
    return 0


def cmd_image_create(args) -> int:
    from . import images

    if state.load(args.name) is None:
        raise lifecycle.no_box(args.name)
    if not args.no_pull:
        from remote.results import pull_unfetched

        pull_unfetched(args.name, say)  # the clean-up removes the box's runs
    from remote import bake, setup  # composition: the CLI joins the halves
    from remote.connection import connect
    from remote.target import resolve
    from sandbox import boxes as sandbox

    opts = setup.SetupOptions.from_env()

    def prepare_box(box) -> str:
        # The process box's home is this machine's user's: only its trainbox folder is the box's.
        # The container box is a whole system, cleaned as an instance is.
        home = not box.sandbox or sandbox.kind_of(box.name) == "container"
        conn = connect(resolve(args.name), timeout=30)
        try:
            return bake.prepare(conn, box.workdir, opts, home=home, say=say)
        finally:
            conn.close()

    made = images.create(cloud_for(args), args.name, say, opts.spec_id(), prepare_box, image_name=args.image_name)
    print(
        f"image {made.id} ({made.name}) is available: {_size(made)}, {_month(made)}; "
        f"the next `up` of this environment boots from it"
    )
    say(f"box '{args.name}' is stopped; `{PROG} down{name_flag(args.name)}` removes it (the image is kept)")
    return 0


def _size(image) -> str:
    return f"{'' if image.size_exact else '<= '}{image.size_gb:.1f} GB"


def _month(image) -> str:
    from .images import gb_month_price

    return f"${image.monthly_cost(gb_month_price()):.2f}/month"


def cmd_image_ls(args) -> int:
    import time

    from common.aws import aws_errors

    from . import images

    cloud = cloud_for(args, named=False)
    with aws_errors("list the images"):
        found = images.list_images(cloud.client("ec2"))
    price = images.gb_month_price()
    if args.json:
        print(json.dumps([i.as_dict(price) for i in found], indent=2))
        return 0
    if not found:
        print(f"no trainbox images in {cloud.region}")
        return 0
    print(f"{'image':<22} {'box':<10} {'age':>9} {'size':>10} {'$/month':>8} {'state':<10} {'spec':<21} base")
    for i in found:
        print(
            f"{i.id:<22} {i.box:<10} {images._age(time.time() - i.created):>9} {_size(i):>10} "
            f"{i.monthly_cost(price):>8.2f} {i.state:<10} {i.spec:<21} {i.base_ami}"
        )
    total = sum(i.monthly_cost(price) for i in found)
    say(
        f"snapshots bill ${price}/GB-month while they exist: ${total:.2f}/month in all; `{PROG} image rm IMAGE` removes one"
    )
    return 0


def cmd_image_rm(args) -> int:
    from . import images

    cloud = cloud_for(args, named=False)
    if not args.yes and sys.stdin.isatty():
        answer = input(f"remove {', '.join(args.images)} and their snapshots? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            say("nothing removed")
            return UsageError.exit_code
    removed = images.remove_images(cloud, args.images, say)
    print(f"removed {', '.join(args.images)} ({len(removed)} resources deleted, each verified gone)")
    return 0


def _ask(question: str) -> bool:
    return input(question).strip().lower() in ("y", "yes")


def cmd_sandbox_notice(args) -> int:
    if args.name not in sandbox.sandbox_boxes():
        raise UsageError(
            f"box '{args.name}' is not a sandbox box", "the spot notice stand-in exists in the sandbox only"
        )
    if args.clear:
        sandbox.clear_notice(args.name)
        print(f"box '{args.name}': no spot notice")
        return 0
    doc = sandbox.set_notice(args.name, args.action, args.in_s)
    print(f"box '{args.name}': its IMDS now answers spot/instance-action {doc}")
    return 0


# ---------------------------------------------------------------- parser


def node_arg(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"--node {text!r} is not a node index (0, 1, ...)")
    return int(text)


def build_parser() -> Parser:
    p = Parser(
        prog=PROG,
        description="Launch, look after and tear down a GPU training box on AWS (or in the sandbox).",
        epilog=EXIT_CODES_EPILOG,
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    # Where the box is, one parent for every verb where that means something: a box found by its
    # name alone needs neither (cloud_for).
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--sandbox",
        action="store_true",
        help=(
            "the sandbox: no AWS account, moto on 127.0.0.1 plays AWS, a local sshd or container the instance "
            "(`up` makes its box there; the other verbs find a sandbox box by its name without it)"
        ),
    )
    where.add_argument(
        "--region", help="AWS region (default: the box's own, else AWS_REGION, trainbox.toml, us-east-1)"
    )

    def command(name, func, help, located=True):
        c = sub.add_parser(name, help=help, description=help, parents=[where] if located else [])
        c.add_argument("--name", default="default", type=name_arg, help="the box's name (default: %(default)s)")
        c.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")
        c.set_defaults(func=func)
        return c

    c = command("up", cmd_up, "Launch the box (or reuse and start it) and wait until SSH answers.")
    c.add_argument(
        "--sandbox-box",
        choices=["container", "process"],
        help=(
            "the sandbox's kind of instance: `container` boots a Debian with systemd, cloud-init and the user-data "
            "(systemd-nspawn; needs root), `process` is an sshd running as you "
            "(default: TRAINBOX_SANDBOX_BOX, else container where it can run)"
        ),
    )
    c.add_argument("--instance-type", help="EC2 type (default: g4dn.xlarge, a T4 GPU)")
    c.add_argument(
        "--spot",
        action="store_true",
        help=(
            "use a spot instance: cheaper, but AWS may interrupt it. It is a persistent spot request that stops "
            "(never terminates) the box, so the disk and results survive an interruption and the idle/hard-limit "
            "guards; AWS restarts it when capacity returns, and the stopped disk still bills a little. "
            "`down` cancels the request, then terminates the box"
        ),
    )
    c.add_argument("--ssh-cidr", help="who may SSH in (default: this machine's public IP /32)")
    c.add_argument(
        "--max-hours",
        type=range_arg("max_hours"),
        help="hard limit: the box stops itself after this uptime (default: 8)",
    )
    c.add_argument(
        "--idle-minutes",
        type=range_arg("idle_minutes"),
        help="the box stops itself after this long with no job and no SSH (default: 30)",
    )
    c.add_argument("--volume-gb", type=range_arg("volume_gb"), help="root volume size, encrypted gp3 (default: 100)")
    c.add_argument("--ami", help="boot this AMI instead of the newest Deep Learning AMI")
    c.add_argument("--no-wait", action="store_true", help="return once the instance runs, without waiting for SSH")
    c.add_argument(
        "--nodes",
        type=range_arg("nodes"),
        default=1,
        help=(
            "instances under the box's name, for multi-node training (default: 1). More than one: a cluster "
            "placement group, all TCP between the nodes (ssh still only from --ssh-cidr), N × the price"
        ),
    )

    from .recover import PEERS_HELP, instance_types_arg

    c.add_argument(
        "--recover",
        action="store_true",
        help=(
            "with --spot: the box is an EC2 Auto Scaling group of one spot instance over several types and every "
            "zone that offers them; when AWS reclaims the instance, the group launches another, and `state`, `ip` "
            "and `ssh` follow it. `down` deletes the group and its launch template"
        ),
    )
    c.add_argument(
        "--instance-types",
        type=instance_types_arg,
        metavar="A,B,...",
        help=f"with --recover: the group's types, in order of preference (default: {PEERS_HELP})",
    )

    c = command("state", cmd_state, "Show the box: instance, state, address, uptime, price/h and cost so far.")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    command("start", cmd_start, "Start a stopped box and wait until it runs (its IP changes).")
    command("stop", cmd_stop, "Stop the box: compute stops billing, the disk is kept.")
    c = command("ip", cmd_ip, "Print the box's address.")
    c.add_argument("--node", type=node_arg, default=0, help="of this node of a multi-node box (default: 0)")
    c = command("ssh", cmd_ssh, "Open an SSH session to the box (extra arguments go to ssh).")
    c.add_argument("--node", type=node_arg, default=0, help="to this node of a multi-node box (default: 0)")
    c.add_argument("ssh_args", nargs="*", help="passed to ssh, e.g. `-- nvidia-smi`")
    c = command(
        "nb",
        cmd_nb,
        "Open Jupyter Lab on the box through an SSH tunnel (started there if needed; its port is never opened to the internet).",
    )
    c.add_argument("--port", type=positive_int, default=8888, help="Jupyter's port on the box (default: %(default)s)")
    c.add_argument(
        "--local-port", type=positive_int, help="the laptop's end of the tunnel (default: the same as --port)"
    )
    c = command("ls", cmd_ls, "List everything tagged by trainbox that can bill, orphans included.")
    c.add_argument("--all-regions", action="store_true", help="look in every region")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    command(
        "aliases",
        cmd_aliases,
        'Print the course\'s shell aliases (aws-state, aws-start, ...): eval "$(python -m provision aliases)".',
        located=False,
    )
    command(
        "ssh-config",
        cmd_ssh_config,
        "Write an OpenSSH config entry so `ssh trainbox-NAME` and editors' Remote-SSH work.",
        located=False,
    )
    c = command(
        "down", cmd_down, "Pull unfetched results, then delete every resource of the box and verify each is gone."
    )
    c.add_argument("--no-pull", action="store_true", help="do not pull unfetched results first")
    c.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    c.add_argument(
        "--images", action="store_true", help="also remove the box's images and their snapshots (kept by default)"
    )
    c.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="a --recover box: keep its prefix in trainbox's S3 bucket (its runs' checkpoints); the rest goes",
    )
    c = command(
        "sandbox-notice",
        cmd_sandbox_notice,
        "Sandbox only: make a container box's IMDS stand-in (127.0.0.1) "
        "answer a spot interruption notice, as AWS does two minutes before it stops a spot box.",
        located=False,
    )
    c.add_argument(
        "--action",
        choices=["stop", "terminate", "hibernate"],
        default="stop",
        help="the notice's action (default: %(default)s)",
    )
    c.add_argument(
        "--in",
        dest="in_s",
        type=positive_float,
        default=120.0,
        metavar="SECONDS",
        help="the notice's time, this many seconds from now (default: %(default)s, as AWS)",
    )
    c.add_argument("--clear", action="store_true", help="take the notice back")

    from .images import KEPT_TEXT

    img = sub.add_parser(
        "image",
        help="Bake a box's ready environment into an AMI, so the next `up` installs nothing; list, remove.",
        description="trainbox images: an AMI of a box's environment (`up` boots the newest one of the current pins).",
    )
    isub = img.add_subparsers(dest="image_command", required=True, metavar="IMAGE_COMMAND", parser_class=Parser)

    def image_command(name, func, help, box=True):
        c = isub.add_parser(name, help=help, description=help, parents=[where])
        if box:
            c.add_argument("--name", default="default", help="the box's name (default: %(default)s)")
        else:
            c.set_defaults(name="default")
        c.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")
        c.set_defaults(func=func)
        return c

    c = image_command(
        "create",
        cmd_image_create,
        (
            "Bake the box's environment into an image: pull unfetched results, clean the user's things off its disk "
            f"over SSH ({KEPT_TEXT}), stop the box, create the AMI, tag it and its snapshots, wait until available."
        ),
    )
    c.add_argument("--image-name", help="the AMI's name (default: trainbox-BOX-DATE-TIME)")
    c.add_argument(
        "--no-pull",
        action="store_true",
        help="do not pull unfetched results first (the clean-up removes them from the box)",
    )
    c = image_command("ls", cmd_image_ls, "List trainbox's images: age, size and monthly snapshot cost.", box=False)
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c = image_command(
        "rm",
        cmd_image_rm,
        "Remove images: deregister each and delete its snapshots, verifying both are gone.",
        box=False,
    )
    c.add_argument("images", nargs="+", metavar="IMAGE", help="ami-... (see `image ls`)")
    c.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "region"):
        args.region = None
    return run_cli(args.func, args)
