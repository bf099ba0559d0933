"""`python -m provision up`, `down` and `image create|ls|rm`: a box's making and unmaking.

up and down are where the halves meet: up hands the instance remote's bootstrap
(user-data at first boot), down and image create pull unfetched results first.
"""

from __future__ import annotations

import json
import sys

from box.layout import DEFAULT_WORKDIR
from common import state
from common.aws import Cloud
from common.cliutil import sandbox_note, say
from common.errors import RemoteError, UsageError, name_flag
from provision import config, lifecycle
from sandbox import boxes as sandbox

from .cloud import PROG, cloud_for, on_aws, state_or_warn


def first_boot_bootstrap() -> str | None:
    """The bootstrap user-data starts at first boot, or None: any process on the
    box can read its user-data (the instance metadata service), so an index with
    credentials is left to the first `remote` command, which installs over SSH."""
    from remote import setup  # composition: the CLI joins the halves

    env = setup.SetupOptions.from_env()
    return None if env.has_credentials else setup.render_bootstrap(DEFAULT_WORKDIR, env)


def cmd_up(args) -> int:
    from provision.up import UpOptions, up
    from remote import setup  # the bootstrap `remote setup` runs too, for user-data at first boot

    known = state.load(args.name)
    if known is not None and known.sandbox != args.sandbox:
        if args.sandbox:
            raise on_aws(known)
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
        from provision.ami import ssm_lookup

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


def cmd_down(args) -> int:
    cloud = cloud_for(args, load=state_or_warn)
    interactive = not args.yes and sys.stdin.isatty()
    if interactive and not _ask(f"delete box '{args.name}' and everything tagged for it? [y/N] "):
        say("nothing deleted")
        return UsageError.exit_code  # declined: nothing done
    if not args.no_pull and state_or_warn(args.name) is not None:
        from remote import store_pull
        from remote.results import pull_unfetched

        # A --recover box: the runs no instance has come from its S3 prefix, before `down` deletes it.
        from_store = (
            (lambda ids: store_pull.pull_unfetched(args.name, ids, say)) if store_pull.store_of(args.name) else None
        )
        left = pull_unfetched(args.name, say, from_store, warn=False)
        # Results that could not come home keep the box, --yes or not: only --no-pull (or a "y" here) gives them up.
        if left:
            what = "; ".join(f"run {run} was not brought home ({why})" for run, why in left.items())
            if not interactive:
                raise RemoteError(
                    f"{what}: nothing deleted",
                    f"run `{PROG} down{name_flag(args.name)}` again: it pulls what is missing, then deletes "
                    f"(`remote pull {next(iter(left))}{name_flag(args.name)}` brings one home; "
                    f"`{PROG} down{name_flag(args.name)} --no-pull` deletes without them)",
                )
            if not _ask(f"{what}: delete box '{args.name}' anyway? [y/N] "):
                say("nothing deleted")
                return UsageError.exit_code
    from common.aws import aws_errors
    from provision import images

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
    from provision import images

    if state.load(args.name) is None:
        raise lifecycle.no_box(args.name)
    if not args.no_pull:
        from remote.results import pull_unfetched

        pull_unfetched(args.name, say)  # the clean-up removes the box's runs
    from remote import bake, setup  # composition: the CLI joins the halves
    from remote.connection import connect
    from remote.target import resolve

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
    from provision.images import gb_month_price

    return f"${image.monthly_cost(gb_month_price()):.2f}/month"


def cmd_image_ls(args) -> int:
    import time

    from common.aws import aws_errors
    from provision import images

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
    from provision import images

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
