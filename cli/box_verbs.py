"""`python -m provision state|start|stop|ip|ssh|nb|ls|aliases|ssh-config|sandbox-notice`: a box's everyday verbs."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys

from box.layout import BoxLayout
from common import paths, procs, state
from common.aws import Cloud
from common.cliutil import say
from common.errors import EX_INTERRUPTED, RemoteError, UsageError, name_flag
from common.state import no_box
from provision import config, lifecycle
from sandbox import boxes as sandbox

from .cloud import PROG, cloud_for, sandbox_cloud, state_or_warn


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
    if inst.state in ("shutting-down", "terminated"):  # a --recover box: its group is at 0
        print(
            f"box '{args.name}' is stopped: its group is at 0 instances ({inst.id} {inst.state}); its runs are "
            f"kept in S3, and `{PROG} start{name_flag(args.name)}` resumes them on a new instance"
        )
        return 0
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
    from provision.sshcmd import ssh_argv as build

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

    from provision import sshcmd

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
        return sandbox_cloud(), None
    if args.region or args.all_regions:
        return Cloud(config.setting("region", args.region)), None
    box = state_or_warn(args.name)
    if box is not None and box.sandbox:
        why = f"box '{args.name}' is a sandbox box; AWS was not checked: `{PROG} ls --region REGION` looks there"
        return lifecycle.cloud_of(box), why
    if box is None and not has_credentials():
        return sandbox_cloud(), "no AWS credentials: AWS was not checked"
    others = sandbox.sandbox_boxes() if sandbox.endpoint() else []
    if others:
        say(f"the sandbox has box(es) too ({', '.join(others)}): `{PROG} ls --sandbox` lists them")
    return Cloud(config.setting("region", None)), None


def cmd_ls(args) -> int:
    from common.aws import aws_errors
    from provision.inventory import tagged_resources

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


def cmd_sandbox_notice(args) -> int:
    if args.name not in sandbox.sandbox_boxes():
        raise UsageError(
            f"box '{args.name}' is not a sandbox box", "the spot notice stand-in exists in the sandbox only"
        )
    if args.clear:
        sandbox.clear_notice(args.name)
        print(f"box '{args.name}': no spot notice")
        return 0
    if args.action == "terminate":
        from sandbox import reclaim

        box = state.load(args.name)
        cloud = sandbox_cloud()
        if box is None or cloud is None:
            raise no_box(args.name, "the sandbox has no state or no moto for it")
        reclaim.check_recover(box)
        reclaim.terminate(cloud, box, reclaim.NOTICE_S if args.in_s is None else args.in_s, print)
        return 0
    doc = sandbox.set_notice(args.name, args.action, 120.0 if args.in_s is None else args.in_s)
    print(f"box '{args.name}': its IMDS now answers spot/instance-action {doc}")
    return 0
