"""``remote``: run code on the box from the laptop, and bring every result home.

Thin on purpose: the command line is in remote/cliargs.py; each handler here
calls the library (orchestrate for runs; job, results, records, setup, fetch;
tensorboard, runs_table, report for watching them) and prints. About 680
lines because it has sixteen commands, runs on one node or several, and it
is also where remote meets provision (a stopped box started with --start, a
box's address read again when it comes back from an interruption).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import sys
from pathlib import Path

from box.layout import RUN_OUT, BoxLayout
from common.checks import clean
from common.cliutil import run_cli, sandbox_note, say
from common.errors import (
    MEANING,
    SIGKILLED,
    SIGTERMED,
    RemoteError,
    TrainboxError,
    TrainingFailed,
    UsageError,
    name_flag,
)

from . import builtin, job, orchestrate, records, results
from .builtin import model_package_dir
from .connection import connect, run
from .orchestrate import human as _human
from .target import Target, box_node_count, box_nodes, resolve

PROG = "remote"


def _target(args) -> Target:
    return _wake(
        args,
        resolve(args.name, args.host, args.identity, getattr(args, "python", None), getattr(args, "workdir", None)),
    )


def _wake(args, target: Target) -> Target:
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


def _connect(args, target: Target):
    return connect(target, timeout=args.connect_timeout, say=say)


def _current(target: Target) -> Target:
    """target with its provisioned box's address as it is now: a box that was stopped and
    started, or brought back by its spot request, may have another IP (or sandbox port).
    On AWS the address is asked of AWS (lifecycle.status refreshes the state), and a box
    that is not running is a RemoteError (a follower waits on, nothing to connect to); in
    the sandbox, `provision start` has written it into the state. A --host target, or a
    box with no state any more, is returned as it is."""
    from common import state

    box = state.load(target.box) if target.box else None
    if box is None:
        return target
    if not box.sandbox:
        from common.errors import CloudError
        from provision import lifecycle

        try:
            now = lifecycle.status(lifecycle.cloud_of(box), box.name).state
        except CloudError:  # AWS unreachable from here now: try the address we have
            return target
        if now != "running":
            raise RemoteError(f"box '{box.name}' is {now}", "it resumes its runs when it is back")
        box = state.load(box.name) or box
    return dataclasses.replace(target, host=box.ssh_host, port=box.ssh_port)


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


# ---------------------------------------------------------------- run, train


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
    requirements = _requirements(args, code)
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
        exclude=_exclude(args),
        backend=args.backend or "tensorflow",
    )
    return _start(args, spec)


def _requirements(args, code: Path) -> Path | None:
    """The project's requirements file: --requirements, else its requirements.txt if it has one."""
    requirements = Path(args.requirements).expanduser().resolve() if args.requirements else None
    if requirements is None and (code / "requirements.txt").is_file():
        requirements = code / "requirements.txt"
    if requirements is not None and not requirements.is_file():
        raise UsageError(f"--requirements {args.requirements}: no such file")
    return requirements


def cmd_train(args, extra: list[str]) -> int:
    from . import datasource

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
    spec = builtin.spec(builtin.train_args(args, extra), data, _exclude(args), backend)
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
        price_per_hour=_price(targets[0]),
        **spec.record_fields(),
    )
    try:
        with _whose(None, run_id):
            orchestrate.start_nodes(
                lambda t: _connect(args, t), targets, spec, run_id, say, quiet=True, confirm=_confirm(args)
            )
    except BaseException:
        records.forget(run_id)
        raise
    if args.detach:
        say(f"run {run_id} started on {len(targets)} nodes, detached")
        _print_reattach(args, run_id)
        return 0
    say(
        f"run {run_id} started on {len(targets)} nodes; node 0's log follows (the others' stay in their run folders; "
        "Ctrl-C detaches, the job keeps running)"
    )
    return _collect(args, targets[0], rec)


def _data(data: str | None) -> str | None:
    """--data as recorded: a local folder made absolute, anything else as given."""
    from . import datasource

    if data and isinstance(datasource.parse(data), datasource.LocalSource):
        return str(Path(data).expanduser().resolve())
    return data


def _exclude(args) -> tuple[Path, ...]:
    return (Path(args.runs_dir).resolve(),)


def _start(args, spec: orchestrate.RunSpec, note: str | None = None) -> int:
    from . import setup

    target = _target(args)
    run_id = job.new_run_id()
    with _on_box(args, target) as conn:
        if note:
            say(note)
        # Recorded before the job starts: a laptop killed from then on still knows the run.
        rec = records.new_record(
            run_id, target, Path(args.runs_dir) / run_id, price_per_hour=_price(target), **spec.record_fields()
        )
        try:
            with _whose(None, run_id):
                try:
                    orchestrate.start(
                        conn, target, spec, run_id, say, quiet=args.quiet, progress=_progress, confirm=_confirm(args)
                    )
                except setup.RequirementsFailed as e:  # the user's input: its log home, and the command that retries
                    log = setup.bring_log_home(conn, e, Path(rec.local_dir) / "setup.log")
                    e.what = f"the project's requirements ({spec.requirements}) do not install on the box"
                    e.fix = f"full log: {log}; fix them, then rerun `{PROG} {shlex.join(args.given)}`"
                    raise
        except BaseException:
            records.forget(run_id)
            raise
    if args.detach:
        say(f"run {run_id} started on {target.label}, detached")
        _print_reattach(args, run_id)
        return 0
    say(f"run {run_id} started on {target.label}; its log follows (Ctrl-C detaches, the job keeps running)")
    return _collect(args, target, rec)


def _price(target: Target) -> float | None:
    """The box's price per hour (from its state), recorded with a run for its cost; None for --host."""
    from common import state

    box = state.load(target.box) if target.box else None
    return box.price_per_hour if box is not None else None


def _spec_of(args, rec: records.RunRecord) -> orchestrate.RunSpec | None:
    return builtin.spec_of(rec, _exclude(args) if hasattr(args, "runs_dir") else ())


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
    target = _rec_target(args, rec)
    if args.python:
        target = dataclasses.replace(target, python=args.python)
    with _on_box(args, target) as conn:
        offset, had = orchestrate.resume(
            conn, target, rec, _spec_of(args, rec), say, flags=_name_flags(args), quiet=args.quiet, progress=_progress
        )
    rec.pulled, rec.exit_code, rec.last_seen = False, None, None
    if target.box:
        rec.price_per_hour = _price(target)
    records.move_record(rec, target)
    if args.detach:
        say(f"run {rec.run_id} resumed on {target.label} ({had}), detached")
        _print_reattach(args, rec.run_id)
        return 0
    say(f"run {rec.run_id} resumed on {target.label} ({had}); its log follows (Ctrl-C detaches, the job keeps running)")
    return _collect(args, target, rec, offset=offset)


def _resume_nodes(args, rec: records.RunRecord) -> int:
    """A multi-node run again, on the nodes it ran on: each restarts its run.sh (each resumes from its own backup)."""
    if rec.box is not None:
        _wake(args, resolve(rec.box))  # --start: the box's nodes running (stop got it through _run_of)
    targets = _run_nodes(args, rec)
    offset = orchestrate.restart_nodes(lambda t: _connect(args, t), targets, rec.run_id, say, flags=_name_flags(args))
    rec.pulled, rec.exit_code, rec.last_seen = False, None, None
    records.save_record(rec)
    if args.detach:
        say(f"run {rec.run_id} resumed on its {len(targets)} nodes, detached")
        _print_reattach(args, rec.run_id)
        return 0
    say(
        f"run {rec.run_id} resumed on its {len(targets)} nodes; node 0's log follows (Ctrl-C detaches, the job keeps running)"
    )
    return _collect(args, targets[0], rec, offset=offset)


def _name_flags(args) -> str:
    """The flags a suggested command repeats to reach this run's box."""
    if args.host:
        return f" --host {shlex.quote(args.host)}" + (
            f" --identity {shlex.quote(args.identity)}" if args.identity else ""
        )
    return name_flag(args.name)


def _print_reattach(args, run_id: str) -> None:
    say(
        f"follow its log: `{PROG} logs {run_id} --follow{_name_flags(args)}`; results: `{PROG} pull {run_id}{_name_flags(args)}`"
    )


@contextlib.contextmanager
def _whose(rec: records.RunRecord | None, run_id: str):
    """A trainbox error while a run starts or is followed ends with one more
    line: the code is trainbox's, and what is known of the command's."""
    try:
        yield
    except TrainboxError as e:
        if isinstance(e, TrainingFailed) or e.after:
            raise
        if rec is None:
            theirs = "your command did not start"
        elif rec.exit_code is not None:
            theirs = f"your command's code is {rec.exit_code}"
        else:
            theirs = f"your command's code is not known here (`{PROG} status {run_id}` asks the box)"
        e.after = f"{PROG}: trainbox: exit {e.exit_code} ({MEANING.get(e.exit_code, 'its own error')}); {theirs}"
        raise


def _collect(args, target: Target, rec: records.RunRecord, offset: int = 0) -> int:
    """Follow the run to its end, bring its results home, exit as it did."""
    # A provisioned box is waited for while it is away (a spot stop, a stopped box): its
    # agent resumes the run at boot, and its address is read anew (it may change).
    with _whose(rec, rec.run_id):
        got = orchestrate.follow_and_collect(
            lambda: _connect(args, _current(target)),
            target,
            rec,
            say,
            offset=offset,
            pull_every=args.pull_every,
            reconnect_for=None if target.box else 300.0,
            tty=sys.stdout.isatty(),
        )
    if got.detached:
        say(f"\ndetached from run {rec.run_id}; it keeps running on the box")
        _print_reattach(args, rec.run_id)
        return 130
    say(f"results of run {rec.run_id}: {got.local_dir}/ ({got.files} files)")
    summary = builtin.summary(got.local_dir) if rec.kind == "train" else ""
    if summary:
        print(summary)
    from . import report

    page = report.refresh(rec)  # the box's page, with the duration and cost the laptop knows
    if page:
        say(f"report: {page}")
    if got.exit_code == 0:
        return 0
    # No tail of the log here: it was just followed, and its last lines (a traceback) are on the screen.
    if got.exit_code is None and got.stopped:
        raise TrainingFailed(
            f"run {rec.run_id} was stopped before it finished",
            f"continue it with `{PROG} {rec.kind} --resume {rec.run_id}{_name_flags(args)}`",
            code=SIGTERMED,
            after=f"{PROG}: your command was stopped (`{PROG} stop`'s TERM: exit {SIGTERMED}, 128+15)",
        )
    why = f"exit {got.exit_code}" if got.exit_code is not None else "it died without an exit code (killed?)"
    what = "training" if rec.kind == "train" else "the command"
    said = (
        [line[len("error: ") :] for line in got.tail.splitlines() if line.startswith("error: node ")]
        if rec.nodes
        else []
    )
    # The job's own code, passed through (`remote train`'s too: the model's); no code: as if killed (128+9).
    after = (
        None
        if got.exit_code is not None
        else f"{PROG}: your command died leaving no exit code (killed?): exit {SIGKILLED}, as for a kill (128+9)"
    )
    raise TrainingFailed(
        f"{what} failed on the box ({why})" + (f": {said[-1]}" if said else ""),
        f"see {got.local_dir / 'train.log'}",
        code=got.exit_code or SIGKILLED,
        after=after,
    )


# ---------------------------------------------------------------- the others


def _record_or_latest(args) -> records.RunRecord:
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


def _rec_target(args, rec: records.RunRecord) -> Target:
    """Where a run lives: --host if given (in the run's workdir unless --workdir), a --name other
    than the default, else where it was started."""
    if args.host:
        return resolve(args.name, args.host, args.identity, None, getattr(args, "workdir", None) or rec.workdir)
    if args.name != "default":
        return _wake(args, resolve(args.name))
    if rec.box is None:
        return rec.target()
    return _wake(args, resolve(rec.box))


def _run_nodes(args, rec: records.RunRecord) -> list[Target]:
    """Every node of a multi-node run, node 0 first: a provisioned box's as its
    state has them now (a node started again has a new address, and only that
    one is pinned), else as the run recorded them (--host nodes)."""
    if rec.box is not None:
        nodes = box_nodes(rec.box, args.identity)
        if len(nodes) == len(rec.nodes or []):
            return nodes
    return [records.node_target(n) for n in rec.nodes or []]


def _run_of(args) -> tuple[records.RunRecord, Target, str]:
    """The run a command is about (default: the latest), its box, and its dir there."""
    rec = _record_or_latest(args)
    target = _rec_target(args, rec)
    return rec, target, BoxLayout(target.workdir).run(rec.run_id)


@contextlib.contextmanager
def _on_box(args, target: Target):
    """An open connection to target for the block, closed whatever happens."""
    conn = _connect(args, target)
    try:
        yield conn
    finally:
        conn.close()


def cmd_logs(args, extra) -> int:
    rec, target, run_dir = _run_of(args)
    if args.follow:
        return _collect(args, target, rec)
    with _on_box(args, target) as conn:
        sys.stdout.flush()
        job.cat_log(conn, run_dir, sys.stdout.buffer, tty=sys.stdout.isatty())
    return 0


def cmd_status(args, extra) -> int:
    if not args.run and not records.records():
        target = _target(args)
        _connect(args, target).close()
        print(f"{target.label}: reachable; no runs started from here yet")
        return 0
    from . import interruptions

    rec, target, run_dir = _run_of(args)
    with _on_box(args, target) as conn:
        st = job.job_state(conn, run_dir)
        events = interruptions.parse(run(conn, interruptions.read_command(run_dir), "reading the run's events"))
    _seen(rec, st)
    print(f"{rec.run_id} {st.label if st else 'unknown on the box'}")
    for line in interruptions.lines(events):
        print(f"  {line}")
    return 0


def _seen(rec: records.RunRecord, st: job.JobState | None) -> None:
    """Note what the box said of the run, for `remote runs` (which does not ask it)."""
    if st is not None and (rec.last_seen, rec.exit_code) != (st.label, st.exit_code):
        rec.last_seen, rec.exit_code = st.label, st.exit_code
        records.save_record(rec)


def cmd_runs(args, extra) -> int:
    """The runs started from here: box, net, epochs, best monitored metric, duration, cost, state, home."""
    import json

    from . import runs_table

    found = runs_table.rows(records.records(), args.price, args.monitor)
    if args.json:
        print(json.dumps([r.as_dict() for r in found], indent=2))
        return 0
    print(runs_table.table(found) if found else "no runs yet")
    return 0


def cmd_compare(args, extra) -> int:
    """Several pulled runs side by side: one PNG of their curves, a table of their metrics."""
    from . import compare, runs_table

    curves = []
    for run_id in args.runs:
        rec = records.load_record(run_id)
        if rec is None:
            raise UsageError(f"no run {run_id} is known here", f"`{PROG} runs` lists them")
        curves.append(compare.load(rec.run_id, Path(rec.local_dir), args.monitor or runs_table.monitored(rec)))
    png = compare.plot(
        curves, Path(args.out) if args.out else Path(args.runs_dir) / f"compare-{'-'.join(args.runs)}.png"
    )
    print(compare.table(curves))
    print(f"curves: {png}")
    return 0


def cmd_tb(args, extra) -> int:
    """TensorBoard for the box's runs: on the box (kept running), through a tunnel to 127.0.0.1 here; --local: the pulled runs."""
    from . import tensorboard as tb

    if args.local:
        return _tb_local(args)
    recs = {run_id: records.load_record(run_id) for run_id in args.runs}
    known = [r for r in recs.values() if r is not None]
    target = _rec_target(args, known[0]) if known else _target(args)
    if len({(r.host, r.port, r.workdir) for r in known}) > 1 and not (args.host or args.name != "default"):
        raise UsageError(
            f"runs {', '.join(args.runs)} are on different boxes",
            "give the runs of one box (`remote runs` says where each is)",
        )
    # A port asked for is held from now on: taken, nothing starts; free, nothing can take it before the tunnel.
    listener = tb.local_listener(args.local_port, True, say) if args.local_port and not args.stop else None
    try:
        with _on_box(args, target) as conn:
            layout = job.resolve_layout(conn, target.workdir)
            if args.stop:
                n = tb.stop(conn, layout)
                print(f"stopped {n} TensorBoard server(s) on {target.label}")
                return 0
            runs = [(i, f"{layout.run(i)}/{r.out if (r := recs[i]) else RUN_OUT}") for i in dict.fromkeys(args.runs)]
            port = tb.start(conn, layout, runs, python=target.python)
            listener = listener or tb.local_listener(port, False, say)
            what = f"runs {', '.join(args.runs)}" if args.runs else "every run"
            print(f"TensorBoard on {target.label} ({what}): http://127.0.0.1:{listener.getsockname()[1]}/", flush=True)
            down = f" or `python -m provision down{name_flag(target.box)}`" if target.box else ""
            say(
                f"tunnel open (no port of the box is opened to the internet); Ctrl-C closes it, TensorBoard keeps running on "
                f"the box (`{PROG} tb --stop{_name_flags(args)}`{down} ends it)"
            )
            try:
                tb.forward(conn.client.get_transport(), listener, port)
            except KeyboardInterrupt:
                say("tunnel closed; TensorBoard keeps running on the box")
                return 0
    finally:
        if listener is not None:
            listener.close()
    return 0


def _tb_local(args) -> int:
    from . import tensorboard as tb

    if args.stop:
        raise UsageError("--stop ends the box's TensorBoard; a --local one ends with Ctrl-C", f"`{PROG} tb --stop`")
    recs = records.records() if args.runs else _box_records(args)
    runs = tb.local_runs(recs, args.runs)
    if not runs:
        raise UsageError(
            f"no run of {args.host or 'box ' + repr(args.name)} is home yet", f"bring one home with `{PROG} pull RUN`"
        )
    probe = tb.local_listener(args.local_port or tb.LOCAL_PORT, bool(args.local_port), say)
    port = probe.getsockname()[1]
    probe.close()  # TensorBoard binds it next

    def url(port: int) -> None:
        print(f"TensorBoard on this machine ({len(runs)} pulled run(s)): http://127.0.0.1:{port}/", flush=True)
        say("Ctrl-C ends it")

    return tb.serve_local(tb.local_argv(runs, port), url)


def _box_records(args) -> list[records.RunRecord]:
    """The runs started on the box that --name/--host names."""
    if args.host:
        from .target import parse_host

        user, host, port = parse_host(args.host)
        return [r for r in records.records() if (r.host, r.port) == (host, port) and (user is None or r.user == user)]
    return records.records(args.name)


def cmd_report(args, extra) -> int:
    """(Re)write a pulled run's report.html, with its duration and cost."""
    from . import report

    print(report.write(_record_or_latest(args), args.price))
    return 0


def cmd_stop(args, extra) -> int:
    rec, target, run_dir = _run_of(args)
    if rec.nodes and len(rec.nodes) > 1:  # every node's job, at once: the others would wait on node 0's
        states = orchestrate.stop_nodes(lambda t: _connect(args, t), _run_nodes(args, rec), rec.run_id)
        for i, node_state in enumerate(states[1:], 1):
            say(f"node {i}: {node_state.label if node_state else 'unknown on the box'}")
        st = states[0]
    else:
        with _on_box(args, target) as conn:
            st = job.stop(conn, run_dir)
    _seen(rec, st)
    print(f"{rec.run_id} {st.label if st else 'unknown on the box'}")
    if st and st.stopped and not st.running:
        say(
            f"continue it with `{PROG} {rec.kind} --resume {rec.run_id}{_name_flags(args)}`; "
            f"its results so far: `{PROG} pull {rec.run_id}{_name_flags(args)}`"
        )
    return 0


def cmd_pull(args, extra) -> int:
    rec, target, run_dir = _run_of(args)
    with _on_box(args, target) as conn:
        st = job.job_state(conn, run_dir)
        if st is None:
            raise RemoteError(f"run {rec.run_id} is not on the box any more")
        files = results.pull(conn, run_dir, Path(rec.local_dir), out=rec.out)
    rec.pulled = not st.running
    rec.exit_code = st.exit_code
    rec.last_seen = st.label
    records.save_record(rec)
    print(f"pulled {len(files)} files of run {rec.run_id} ({st.label}) into {rec.local_dir}")
    from . import report

    page = report.refresh(rec) if not st.running else None
    if page:
        say(f"report: {page}")
    return 0


# ---------------------------------------------------------------- data


def _data_python(target: Target) -> str:
    return target.python or "python3"


def cmd_data_fetch(args, extra) -> int:
    from . import datasource, fetch

    source = datasource.parse(args.src)
    if isinstance(source, datasource.LocalSource):
        raise UsageError(
            f"{args.src} is a local folder: `{PROG} train --data {args.src}` pushes it",
            "`data fetch` takes an http(s):// URL, s3://bucket/prefix or kaggle:COMPETITION",
        )
    target = _target(args)
    layout = BoxLayout(target.workdir)
    with _on_box(args, target) as conn:
        from . import sync

        sync.push(conn, model_package_dir(), f"{layout.code}/model")  # organizing a Kaggle layout runs it
        got = fetch.fetch(conn, source, target.workdir, _data_python(target), layout.code, quiet=args.quiet, say=say)
    state = "already cached" if got.cached else "fetched"
    print(f"{got.key} {state}: {got.files} files, {_human(got.bytes)} at {got.path} on {target.label}")
    if got.test_path:
        print(f"unlabelled test images for `python -m model predict --test`: {got.test_path}")
    return 0


def cmd_data_ls(args, extra) -> int:
    from . import fetch

    target = _target(args)
    with _on_box(args, target) as conn:
        entries = fetch.ls(conn, target.workdir, _data_python(target))
    if not entries:
        print("no datasets cached on the box")
        return 0
    print(f"{'key':<40} {'size':>9} {'files':>7}  source")
    for e in entries:
        print(clean(f"{e['key']:<40} {_human(e['bytes']):>9} {e['files']:>7}  {e['source']}"))
    return 0


def cmd_data_rm(args, extra) -> int:
    from . import fetch

    if not args.key or args.key.startswith(".") or "/" in args.key:
        raise UsageError(f"{args.key!r} is not a data set key", f"`{PROG} data ls` lists them")
    target = _target(args)
    with _on_box(args, target) as conn:
        gone = fetch.rm(conn, target.workdir, _data_python(target), args.key)
    print(f"removed {gone['key']} from the box ({gone['files']} files, {_human(gone['bytes'])} freed)")
    return 0


# ---------------------------------------------------------------- setup, doctor


def _setup_options(args):
    from . import setup

    return setup.SetupOptions.from_env(
        index_url=args.index_url,
        find_links=args.find_links or None,
        no_index=args.no_index or None,
        jupyter=False if args.no_jupyter else None,
        installer=args.installer,
        python=args.box_python,
        backend=args.backend,
    )


def cmd_setup(args, extra) -> int:
    from . import setup

    target = _target(args)
    opts = _setup_options(args)
    code = Path(args.code).expanduser().resolve() if args.code else None
    requirements = _requirements(args, code) if code else None
    if code and not code.is_dir():
        raise UsageError(f"--code {args.code}: no such directory")
    with _on_box(args, target) as conn:
        if code and requirements:  # the project's own environment, as `remote run` builds it
            on_box = orchestrate.requirements_alone(conn, target.workdir, code, requirements)
            opts = orchestrate.project_options(opts, code, requirements, on_box)
        elif code:
            say(f"{code} has no requirements: it runs in trainbox's environment")
        python = setup.run_bootstrap(conn, target.workdir, opts, say, force=args.force)
    print(f"ready: {python} on {target.label}")
    return 0


def cmd_doctor(args, extra) -> int:
    from . import doctor

    target = _target(args)
    opts, project = _setup_options(args), None
    code = Path(args.code).expanduser().resolve()
    requirements = _requirements(args, code) if code.is_dir() or args.requirements else None
    if requirements is not None and not target.python:  # the project's own environment (as `remote run` builds it)
        opts = orchestrate.project_options(opts, code, requirements)
        project = (str(code), str(requirements))
    with _on_box(args, target) as conn:
        rep = doctor.diagnose(conn, target.workdir, opts, python=target.python, project=project)
    print(doctor.format_report(target.label, rep))
    if not rep.problems:
        return 0
    if project is None:
        raise RemoteError(
            f"the box's environment has problems: {'; '.join(rep.problems)}", f"run `{PROG} setup{_name_flags(args)}`"
        )
    flags = f" --code {shlex.quote(str(code))}" + (
        f" --requirements {shlex.quote(str(requirements))}" if args.requirements else ""
    )
    raise RemoteError(
        f"the project's environment on the box has problems: {'; '.join(rep.problems)}",
        f"`{PROG} setup{flags}{_name_flags(args)}{' --force' if rep.ready else ''}` builds it anew"
        + ("" if rep.ready else f" (as the project's next `{PROG} run` would)"),
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    given = list(argv)  # as typed: what a message repeats to retry
    tail = None
    if "--" in argv:  # `remote run [options] -- COMMAND [ARGS...]`: everything after is the command, untouched
        i = argv.index("--")
        argv, tail = argv[:i], argv[i + 1 :]
    from .cliargs import build_parser

    parser = build_parser(sys.modules[__name__])
    args, extra = parser.parse_known_args(argv)
    args.given = given
    # --host and --workdir are lists for a multi-node `train`; one value everywhere else.
    args.hosts, args.workdirs = args.host or [], args.workdir or []
    if args.command != "train" and (len(args.hosts) > 1 or len(args.workdirs) > 1):
        parser.error("--host and --workdir are given once (several --host: `remote train` over several nodes)")
    args.host, args.workdir = (args.hosts or [None])[0], (args.workdirs or [None])[0]
    if args.command == "run":
        if extra:
            parser.error(
                f"unrecognized arguments: {' '.join(extra)} (the command goes after --: `{PROG} run [options] -- COMMAND`)"
            )
        args.argv = tail or []
    elif args.command == "train":
        extra += tail or []
    elif extra or tail is not None:
        parser.error(f"unrecognized arguments: {' '.join(extra + (['--'] if tail is not None else []) + (tail or []))}")
    return run_cli(lambda a: a.func(a, extra), args)
