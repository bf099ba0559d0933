"""`remote run`, `remote train` and `--resume`: start a run on one node or several (remote_follow follows it)."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

from common.cliutil import sandbox_note, say
from common.errors import UsageError, name_flag
from remote import builtin, job, orchestrate, records, unconfirmed
from remote.connection import LinkDropped
from remote.target import Target, box_node_count, box_nodes, resolve

from .remote_follow import collect, whose_code
from .remote_reach import (
    PROG,
    box_session,
    connect_box,
    excludes,
    name_flags,
    price_of,
    print_reattach,
    record_target,
    resolve_target,
    run_nodes,
    wake,
)


def _progress(desc: str):
    def factory(total: int):
        from tqdm import tqdm

        return tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=desc,
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
            leave=False,
        )

    return factory


def _confirm(args):
    """--yes, else a question on a terminal; no terminal: no."""

    def confirm(question: str) -> bool:
        if args.yes:
            return True
        if not sys.stdin.isatty():
            return False
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")

    return confirm


def cmd_run(args, extra: list[str]) -> int:
    if args.resume:
        if args.argv:
            raise UsageError(f"--resume runs the run's own command again: drop {shlex.join(args.argv)}")
        return _resume(args)
    if not args.argv:
        raise UsageError("run needs a command after --", f"e.g. `{PROG} run -- python train.py --epochs 3`")
    code = Path(args.code).expanduser().resolve()
    if not code.is_dir():
        raise UsageError(f"--code {args.code}: no such directory")
    requirements = requirements_of(args, code)
    out = Path(args.out)
    if out.is_absolute() or ".." in out.parts or not out.parts:
        raise UsageError(
            f"--out {args.out}: give a folder inside the run's directory on the box (e.g. out, results/final)"
        )
    spec = orchestrate.RunSpec(
        code=code,
        command=tuple(args.argv),
        data=_data(args.data),
        requirements=requirements,
        out=out.as_posix(),
        exclude=excludes(args),
        backend=args.backend or "tensorflow",
    )
    return _start(args, spec)


def requirements_of(args, code: Path) -> Path | None:
    """The project's requirements file: --requirements, else its requirements.txt if it has one."""
    requirements = Path(args.requirements).expanduser().resolve() if args.requirements else None
    if requirements is None and (code / "requirements.txt").is_file():
        requirements = code / "requirements.txt"
    if requirements is not None and not requirements.is_file():
        raise UsageError(f"--requirements {args.requirements}: no such file")
    return requirements


def cmd_train(args, extra: list[str]) -> int:
    from remote import datasource

    if args.resume:
        if extra or args.data or args.backend:
            raise UsageError(
                f"--resume re-runs the run as it was started: drop {' '.join(extra) or ('--data' if args.data else '--backend')}"
            )
        return _resume(args)
    if args.epochs is None:
        raise UsageError("train needs --epochs N (or --resume RUN)", f"see `{PROG} train --help`")
    data = _data(args.data)
    if data and isinstance(datasource.parse(data), datasource.LocalSource):
        datasource.check_image_folders(Path(data))
    note = (
        None
        if data
        else (
            "no --data given: training on a small synthetic two-class image set generated on the box "
            "(`python -m model synth`); pass --data DIR for your own images"
        )
    )
    nodes, backend = _nodes(args)
    spec = builtin.spec(builtin.train_args(args, extra), data, excludes(args), backend)
    if nodes > 1:
        return _start_nodes(args, spec, note)
    return _start(args, spec, note)


def _nodes(args) -> tuple[int, str]:
    """How many nodes `train` runs on (--nodes, else one per --host) and its backend."""
    on_box = 1 if args.hosts else box_node_count(args.name)
    nodes = args.nodes or max(len(args.hosts), on_box)
    if not args.hosts and nodes != on_box:
        raise UsageError(
            f"--nodes {nodes}: box '{args.name}' has {on_box} node(s)",
            f"grow it with `python -m provision up --nodes {nodes}{name_flag(args.name)}`, or give one --host per node",
        )
    if nodes == 1:
        if len(args.workdirs) > 1:
            raise UsageError("several --workdir need as many --host (one per node)")
        return 1, args.backend or "tensorflow"
    if args.hosts and len(args.hosts) != nodes:
        raise UsageError(
            f"--nodes {nodes} needs {nodes} --host, one per node (node 0 first); got {len(args.hosts)}",
            "give each node's [user@]host[:port] with --host",
        )
    if len(args.workdirs) not in (0, 1, nodes):
        raise UsageError(f"{len(args.workdirs)} --workdir for {nodes} nodes: give one for all, or one per --host")
    if args.backend == "tensorflow":
        raise UsageError(
            f"--nodes {nodes} trains on Keras's JAX backend: TensorFlow's multi-worker strategy fails "
            "inside Keras 3's fit (keras#20585)",
            "drop --backend tensorflow",
        )
    if args.backend is None:
        say(
            f"{nodes} nodes: training on Keras's JAX backend (--backend jax; Keras 3's multi-worker TensorFlow fails in fit, keras#20585)"
        )
    return nodes, "jax"


def _node_targets(args) -> list[Target]:
    """One target per node: the --host list, else the provisioned box's nodes."""
    if not args.hosts:
        nodes = box_nodes(args.name, args.identity, args.python)
        if nodes[0].sandbox:
            sandbox_note(args.name, ", ".join(f"{n.host}:{n.port}" for n in nodes))
        return nodes
    workdirs = args.workdirs * len(args.hosts) if len(args.workdirs) <= 1 else args.workdirs
    return [
        resolve(args.name, h, args.identity, args.python, (workdirs or [None] * len(args.hosts))[i])
        for i, h in enumerate(args.hosts)
    ]


def _start_nodes(args, spec: orchestrate.RunSpec, note: str | None) -> int:
    """A multi-node run: started on every node at once, node 0's log followed, its results brought home."""
    targets = _node_targets(args)
    run_id = job.new_run_id()
    if note:
        say(note)
    rec = records.new_record(
        run_id,
        targets[0],
        Path(args.runs_dir) / run_id,
        nodes=[records.node_of(t) for t in targets],
        price_per_hour=price_of(targets[0]),
        **spec.record_fields(),
    )
    try:
        with whose_code(None, run_id):
            orchestrate.start_nodes(
                lambda t: connect_box(args, t), targets, spec, run_id, say, quiet=True, confirm=_confirm(args)
            )
    except BaseException:
        records.forget(run_id)
        raise
    return _detach_or_follow(
        args, rec, targets[0], f"{len(targets)} nodes", "node 0's log follows (the others' stay in their run folders; "
    )


def _data(data: str | None) -> str | None:
    """--data as recorded: a local folder made absolute, anything else as given."""
    from remote import datasource

    if data and isinstance(datasource.parse(data), datasource.LocalSource):
        return str(Path(data).expanduser().resolve())
    return data


def _start(args, spec: orchestrate.RunSpec, note: str | None = None) -> int:
    from remote import setup

    target = resolve_target(args)
    run_id = job.new_run_id()
    with box_session(args, target) as conn:
        unconfirmed.before_start(conn, target, spec.record_fields(), say, _confirm(args), name_flags(args))
        if note:
            say(note)
        # Recorded before the job starts: a laptop killed from then on still knows the run.
        rec = records.new_record(
            run_id, target, Path(args.runs_dir) / run_id, price_per_hour=price_of(target), **spec.record_fields()
        )
        starting: list[bool] = []  # from here on the start may reach the box
        try:
            with whose_code(None, run_id):
                try:
                    orchestrate.start(
                        conn,
                        target,
                        spec,
                        run_id,
                        say,
                        quiet=args.quiet,
                        progress=_progress,
                        confirm=_confirm(args),
                        ready=lambda: starting.append(True),
                    )
                except setup.RequirementsFailed as e:  # the user's input: its log home, and the command that retries
                    log = setup.bring_log_home(conn, e, Path(rec.local_dir) / "setup.log")
                    e.what = f"the project's requirements ({spec.requirements}) do not install on the box"
                    e.fix = f"full log: {log}; fix them, then rerun `{PROG} {shlex.join(args.given)}`"
                    raise
        except (LinkDropped, KeyboardInterrupt) as e:
            if not starting:
                records.forget(run_id)
                raise
            # Cut inside the start: the job may be running. Kept, until its box is asked (remote/unconfirmed.py).
            unconfirmed.mark(rec)
            if isinstance(e, LinkDropped):
                e.after = None
                with whose_code(
                    rec, run_id
                ):  # its last line: the command's code is not known here (not "did not start")
                    raise
            raise
        except BaseException:
            records.forget(run_id)
            raise
    return _detach_or_follow(args, rec, target, target.label, "its log follows (")


def _detach_or_follow(args, rec: records.RunRecord, target: Target, where: str, follows: str) -> int:
    """A run just started: say so, then return (--detach) or follow it to its end."""
    if args.detach:
        say(f"run {rec.run_id} started on {where}, detached")
        print_reattach(args, rec.run_id)
        return 0
    say(f"run {rec.run_id} started on {where}; {follows}Ctrl-C detaches, the job keeps running)")
    return collect(args, target, rec)


def _spec_of(args, rec: records.RunRecord) -> orchestrate.RunSpec | None:
    return builtin.spec_of(rec, excludes(args) if hasattr(args, "runs_dir") else ())


def _resume(args) -> int:
    """Continue a killed, failed or stopped run (one that succeeded is refused): on its box, run its script again
    in its run dir (a Keras script's BackupAndRestore state in $TRAINBOX_OUT
    resumes it at the epoch after the last one saved, and the log goes on
    where it stopped); on a box that does not have it, rebuild it there from
    its local copy (pulled by `remote pull` or `provision down`)."""
    rec = records.load_record(args.resume)
    if rec is None:
        raise UsageError(f"no run {args.resume} is known here", f"`{PROG} runs` lists them")
    orchestrate.refuse_if_succeeded(rec, orchestrate.local_exit_code(rec))  # known here: nothing is reached or pushed
    if rec.nodes:
        return _resume_nodes(args, rec)
    target = record_target(args, rec)
    if args.python:
        target = dataclasses.replace(target, python=args.python)
    with box_session(args, target) as conn:
        offset, had = orchestrate.resume(
            conn, target, rec, _spec_of(args, rec), say, flags=name_flags(args), quiet=args.quiet, progress=_progress
        )
    rec.pulled, rec.exit_code, rec.last_seen = False, None, None
    if target.box:
        rec.price_per_hour = price_of(target)
    records.move_record(rec, target)
    if args.detach:
        say(f"run {rec.run_id} resumed on {target.label} ({had}), detached")
        print_reattach(args, rec.run_id)
        return 0
    say(f"run {rec.run_id} resumed on {target.label} ({had}); its log follows (Ctrl-C detaches, the job keeps running)")
    return collect(args, target, rec, offset=offset)


def _resume_nodes(args, rec: records.RunRecord) -> int:
    """A multi-node run again, on the nodes it ran on: each restarts its run.sh (each resumes from its own backup)."""
    if rec.box is not None:
        wake(args, resolve(rec.box))  # --start: the box's nodes running (stop got it through run_of)
    targets = run_nodes(args, rec)
    offset = orchestrate.restart_nodes(lambda t: connect_box(args, t), targets, rec.run_id, say, flags=name_flags(args))
    rec.pulled, rec.exit_code, rec.last_seen = False, None, None
    records.save_record(rec)
    if args.detach:
        say(f"run {rec.run_id} resumed on its {len(targets)} nodes, detached")
        print_reattach(args, rec.run_id)
        return 0
    say(
        f"run {rec.run_id} resumed on its {len(targets)} nodes; node 0's log follows (Ctrl-C detaches, the job keeps running)"
    )
    return collect(args, targets[0], rec, offset=offset)
