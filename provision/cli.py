"""``python -m provision``: launch, look after and tear down a GPU box.

Thin on purpose: parse, call one library function, print.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys

from . import config, lifecycle, paths, procs, sandbox, state
from .aws import Cloud
from .cliutil import Parser, positive_float, positive_int, run_cli, say
from .errors import RemoteError, UsageError

PROG = "python -m provision"


def cloud_for(args) -> Cloud:
    """The AWS a command talks to: the box's own (from state), the sandbox, or AWS."""
    box = state.load(args.name)
    if box is not None:
        return lifecycle.cloud_of(box)
    if getattr(args, "sandbox", False) or args.name in sandbox.sandbox_boxes():
        endpoint = sandbox.endpoint()
        if endpoint is None:
            raise UsageError("the sandbox is not running", f"start it with `{PROG} up --sandbox`")
        return Cloud(sandbox.REGION, endpoint, sandbox=True)
    return Cloud(config.setting("region", getattr(args, "region", None)))


def name_flag(name: str) -> str:
    return "" if name == "default" else f" --name {name}"


# ---------------------------------------------------------------- commands


def cmd_up(args) -> int:
    from .up import UpOptions, up

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
    price = f"${box.price_per_hour:.3f}/h" if box.price_per_hour is not None else "price unknown"
    where = f"{box.ssh_host}:{box.ssh_port}" if box.sandbox else box.ssh_host
    print(f"box '{box.name}' is up: {box.instance_id} {box.instance_type} at {where} ({price})")
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
    print(f"box '{args.name}' is {inst.state} (the disk is kept and still bills a little; `{PROG} down` removes it)")
    return 0


def _ready_box(args) -> state.BoxState:
    s = lifecycle.status(cloud_for(args), args.name)
    if s.state != "running":
        raise UsageError(f"box '{args.name}' is {s.state}", f"start it with `{PROG} start{name_flag(args.name)}`")
    box = state.load(args.name)
    if box is None:
        raise lifecycle.no_box(args.name)
    return box


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


def cmd_ssh(args) -> int:
    argv = ssh_argv(_ready_box(args), [a for a in args.ssh_args if a != "--"])
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
    script = sshcmd.jupyter_start_script(
        sshcmd.box_python(box), args.port, sshcmd.jupyter_dir(box), secrets.token_hex(24),
        env=None if box.python else sshcmd.env_link(box),
    )
    # The script carries the token: it goes on ssh's stdin, never on a command line.
    p = subprocess.run(sshcmd.ssh_argv(ssh, box, known, ["bash", "-s"]), input=script, capture_output=True, text=True)
    if p.returncode != 0:
        why = (p.stderr.strip().splitlines() or [f"ssh exited {p.returncode}"])[-1]
        raise RemoteError(f"could not start Jupyter on box '{args.name}' ({why})")
    port, token = p.stdout.strip().splitlines()[-1].split()
    port = int(port)
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
    argv = sshcmd.tunnel_argv(ssh, box, known, port, local)
    os.execv(argv[0], argv)
    return 0  # not reached


def cmd_ls(args) -> int:
    from .aws import aws_errors
    from .inventory import tagged_resources

    base = cloud_for(args)
    regions = [base.region]
    if args.all_regions and not base.sandbox:
        with aws_errors("list regions"):
            regions = sorted(r["RegionName"] for r in base.client("ec2").describe_regions()["Regions"])
    found = []
    for region in regions:
        cloud = Cloud(region, base.endpoint_url, base.sandbox)
        with aws_errors(f"list resources in {region}"):
            found += tagged_resources(cloud.client("ec2"), region)
    if args.json:
        print(json.dumps([r.__dict__ for r in found], indent=2))
        return 0
    if not found:
        print("nothing tagged trainbox:managed=true" + ("" if args.all_regions else f" in {base.region} (try --all-regions)"))
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
        raise lifecycle.no_box(args.name)
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


def cmd_down(args) -> int:
    cloud = cloud_for(args)
    if not args.yes and sys.stdin.isatty():
        answer = input(f"delete box '{args.name}' and everything tagged for it? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            say("nothing deleted")
            return 2
    if not args.no_pull and state.load(args.name) is not None:
        from remote.results import pull_unfetched

        pull_unfetched(args.name, say)
    removed = lifecycle.destroy(cloud, args.name, say)
    print(f"box '{args.name}' is gone ({len(removed)} resources deleted, each verified)")
    return 0


def cmd_sandbox_notice(args) -> int:
    if args.name not in sandbox.sandbox_boxes():
        raise UsageError(f"box '{args.name}' is not a sandbox box", "the spot notice stand-in exists in the sandbox only")
    if args.clear:
        sandbox.clear_notice(args.name)
        print(f"box '{args.name}': no spot notice")
        return 0
    doc = sandbox.set_notice(args.name, args.action, args.in_s)
    print(f"box '{args.name}': its IMDS now answers spot/instance-action {doc}")
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Launch, look after and tear down a GPU training box on AWS (or in the sandbox).")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(name, func, help):
        c = sub.add_parser(name, help=help, description=help)
        c.add_argument("--name", default="default", help="the box's name (default: %(default)s)")
        c.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")
        c.set_defaults(func=func)
        return c

    c = command("up", cmd_up, "Launch the box (or reuse and start it) and wait until SSH answers.")
    c.add_argument("--sandbox", action="store_true", help="no AWS account: moto on 127.0.0.1 plays AWS, a local sshd plays the instance")
    c.add_argument("--sandbox-box", choices=["container", "process"], help=(
        "the sandbox's kind of instance: `container` boots a Debian with systemd, cloud-init and the user-data "
        "(systemd-nspawn; needs root), `process` is an sshd running as you "
        "(default: TRAINBOX_SANDBOX_BOX, else container where it can run)"))
    c.add_argument("--region", help="AWS region (default: AWS_REGION, trainbox.toml, us-east-1)")
    c.add_argument("--instance-type", help="EC2 type (default: g4dn.xlarge, a T4 GPU)")
    c.add_argument("--spot", action="store_true", help=(
        "use a spot instance: cheaper, but AWS may interrupt it. It is a persistent spot request that stops "
        "(never terminates) the box, so the disk and results survive an interruption and the idle/hard-limit "
        "guards; AWS restarts it when capacity returns, and the stopped disk still bills a little. "
        "`down` cancels the request, then terminates the box"))
    c.add_argument("--ssh-cidr", help="who may SSH in (default: this machine's public IP /32)")
    c.add_argument("--max-hours", type=positive_float, help="hard limit: the box stops itself after this uptime (default: 8)")
    c.add_argument("--idle-minutes", type=positive_float, help="the box stops itself after this long with no job and no SSH (default: 30)")
    c.add_argument("--volume-gb", type=positive_int, help="root volume size, encrypted gp3 (default: 100)")
    c.add_argument("--ami", help="boot this AMI instead of the newest Deep Learning AMI")
    c.add_argument("--no-wait", action="store_true", help="return once the instance runs, without waiting for SSH")

    c = command("state", cmd_state, "Show the box: instance, state, address, uptime, price/h and cost so far.")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    command("start", cmd_start, "Start a stopped box and wait until it runs (its IP changes).")
    command("stop", cmd_stop, "Stop the box: compute stops billing, the disk is kept.")
    command("ip", cmd_ip, "Print the box's address.")
    c = command("ssh", cmd_ssh, "Open an SSH session to the box (extra arguments go to ssh).")
    c.add_argument("ssh_args", nargs="*", help="passed to ssh, e.g. `-- nvidia-smi`")
    c = command("nb", cmd_nb, "Open Jupyter Lab on the box through an SSH tunnel (started there if needed; its port is never opened to the internet).")
    c.add_argument("--port", type=positive_int, default=8888, help="Jupyter's port on the box (default: %(default)s)")
    c.add_argument("--local-port", type=positive_int, help="the laptop's end of the tunnel (default: the same as --port)")
    c = command("ls", cmd_ls, "List everything tagged by trainbox that can bill, orphans included.")
    c.add_argument("--sandbox", action="store_true", help="look in the sandbox")
    c.add_argument("--region", help="AWS region")
    c.add_argument("--all-regions", action="store_true", help="look in every region")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    command("aliases", cmd_aliases, "Print the course's shell aliases (aws-state, aws-start, ...): eval \"$(python -m provision aliases)\".")
    command("ssh-config", cmd_ssh_config, "Write an OpenSSH config entry so `ssh trainbox-NAME` and editors' Remote-SSH work.")
    c = command("down", cmd_down, "Pull unfetched results, then delete every resource of the box and verify each is gone.")
    c.add_argument("--region", help="AWS region (when there is no local state)")
    c.add_argument("--sandbox", action="store_true", help="the box is in the sandbox (only needed with no local state)")
    c.add_argument("--no-pull", action="store_true", help="do not pull unfetched results first")
    c.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    c = command("sandbox-notice", cmd_sandbox_notice, "Sandbox only: make a container box's IMDS stand-in (127.0.0.1) "
                "answer a spot interruption notice, as AWS does two minutes before it stops a spot box.")
    c.add_argument("--action", choices=["stop", "terminate", "hibernate"], default="stop", help="the notice's action (default: %(default)s)")
    c.add_argument("--in", dest="in_s", type=positive_float, default=120.0, metavar="SECONDS",
                   help="the notice's time, this many seconds from now (default: %(default)s, as AWS)")
    c.add_argument("--clear", action="store_true", help="take the notice back")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "region"):
        args.region = None
    return run_cli(args.func, args)
