"""`python -m provision`: launch, look after and tear down a GPU box (the parser and main).

Thin on purpose: parse, call one handler (box_life, box_verbs), which calls
one library function and prints. About 230 lines: twelve commands and three
image actions, each with its flags and help.
"""

from __future__ import annotations

import argparse

from common.checks import name_arg, range_arg
from common.cliutil import EXIT_CODES_EPILOG, Parser, positive_float, positive_int, run_cli

from .box_life import cmd_down, cmd_image_create, cmd_image_ls, cmd_image_rm, cmd_up
from .box_verbs import (
    cmd_aliases,
    cmd_ip,
    cmd_ls,
    cmd_nb,
    cmd_sandbox_notice,
    cmd_ssh,
    cmd_ssh_config,
    cmd_start,
    cmd_state,
    cmd_stop,
)
from .cloud import PROG


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

    from provision.recover import PEERS_HELP, instance_types_arg

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
    c.add_argument(
        "--no-pull",
        action="store_true",
        help="do not pull unfetched results first (without it, a run that cannot be brought home keeps the box, --yes or not)",
    )
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
        "answer a spot interruption notice, as AWS does two minutes before it stops a spot box; "
        "with --action terminate (a --recover box), then terminate the instance through its group "
        "and boot the group's replacement, as AWS does.",
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
        default=None,
        metavar="SECONDS",
        help="the notice's time, this many seconds from now (default: 120, as AWS; 5 for terminate, "
        "which the sandbox then carries out)",
    )
    c.add_argument("--clear", action="store_true", help="take the notice back")

    from provision.images import KEPT_TEXT

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
