"""The box (or host) a `remote` command reaches, and the run it is about: shared by every remote command.

Where remote meets provision: a stopped box is started with --start
(provision.lifecycle).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
from pathlib import Path

from box.layout import BoxLayout
from common.cliutil import sandbox_note, say
from common.errors import UsageError, name_flag
from remote import records
from remote.connection import connect
from remote.target import Target, box_nodes, resolve

PROG = "remote"


def resolve_target(args) -> Target:
    return wake(
        args,
        resolve(args.name, args.host, args.identity, getattr(args, "python", None), getattr(args, "workdir", None)),
    )


def wake(args, target: Target) -> Target:
    """Every provisioned box a command reaches by its name passes here: a sandbox box is said
    to be one (once). ``--start``: a box that is not running is started (and
    waited for) first; its address may have changed, so it is resolved again."""
    if target.box and target.sandbox:
        sandbox_note(target.box, f"{target.host}:{target.port}")
    if not getattr(args, "start", False) or not target.box:
        return target
    import sandbox  # noqa: F401 (a sandbox box's cloud: the package registers it with common/aws.py)
    from common import state
    from provision import lifecycle

    box = state.load(target.box)
    if box is None:
        raise state.no_box(target.box)
    cloud = lifecycle.cloud_of(box)
    now = lifecycle.status(cloud, target.box).state
    if now == "running":
        return target
    say(f"box '{target.box}' is {now}: starting it (--start)")
    lifecycle.start(cloud, target.box)
    woken = resolve(target.box)
    return dataclasses.replace(woken, python=target.python, workdir=target.workdir)


def connect_box(args, target: Target):
    return connect(target, timeout=args.connect_timeout, say=say)


def excludes(args) -> tuple[Path, ...]:
    return (Path(args.runs_dir).resolve(),)


def price_of(target: Target) -> float | None:
    """The box's price per hour (from its state), recorded with a run for its cost; None for --host."""
    from common import state

    box = state.load(target.box) if target.box else None
    return box.price_per_hour if box is not None else None


def name_flags(args) -> str:
    """The flags a suggested command repeats to reach this run's box."""
    if args.host:
        return f" --host {shlex.quote(args.host)}" + (
            f" --identity {shlex.quote(args.identity)}" if args.identity else ""
        )
    return name_flag(args.name)


def print_reattach(args, run_id: str) -> None:
    say(
        f"follow its log: `{PROG} logs {run_id} --follow{name_flags(args)}`; results: `{PROG} pull {run_id}{name_flags(args)}`"
    )


def record_or_latest(args) -> records.RunRecord:
    if args.run:
        rec = records.load_record(args.run)
        if rec is None:
            raise UsageError(f"no run {args.run} is known here", f"`{PROG} runs` lists them")
        return rec
    rec = records.latest()
    if rec is None:
        raise UsageError(
            "no run is known here yet", f"start one with `{PROG} run -- python train.py` or `{PROG} train --epochs 3`"
        )
    return rec


def record_target(args, rec: records.RunRecord) -> Target:
    """Where a run lives: --host if given (in the run's workdir unless --workdir), a --name other
    than the default, else where it was started."""
    if args.host:
        return resolve(args.name, args.host, args.identity, None, getattr(args, "workdir", None) or rec.workdir)
    if args.name != "default":
        return wake(args, resolve(args.name))
    if rec.box is None:
        return rec.target()
    return wake(args, resolve(rec.box))


def run_nodes(args, rec: records.RunRecord) -> list[Target]:
    """Every node of a multi-node run, node 0 first: a provisioned box's as its
    state has them now (a node started again has a new address, and only that
    one is pinned), else as the run recorded them (--host nodes)."""
    if rec.box is not None:
        nodes = box_nodes(rec.box, args.identity)
        if len(nodes) == len(rec.nodes or []):
            return nodes
    return [records.node_target(n) for n in rec.nodes or []]


def run_of(args) -> tuple[records.RunRecord, Target, str]:
    """The run a command is about (default: the latest), its box, and its dir there."""
    rec = record_or_latest(args)
    target = record_target(args, rec)
    return rec, target, BoxLayout(target.workdir).run(rec.run_id)


@contextlib.contextmanager
def box_session(args, target: Target):
    """An open connection to target for the block, closed whatever happens."""
    conn = connect_box(args, target)
    try:
        yield conn
    finally:
        conn.close()
