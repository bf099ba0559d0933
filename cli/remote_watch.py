"""`remote logs|status|stop|pull|runs|compare|tb|report`: watch a run, and read what came home."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from box.layout import RUN_OUT
from common.cliutil import say
from common.errors import RemoteError, UsageError, name_flag
from remote import job, orchestrate, records, results, unconfirmed
from remote.connection import run

from .remote_follow import collect
from .remote_reach import (
    PROG,
    box_session,
    connect_box,
    name_flags,
    record_or_latest,
    record_target,
    resolve_target,
    run_nodes,
    run_of,
)


def cmd_logs(args, extra) -> int:
    rec, target, run_dir = run_of(args)
    if args.follow:
        return collect(args, target, rec)
    with box_session(args, target) as conn:
        sys.stdout.flush()
        job.cat_log(conn, run_dir, sys.stdout.buffer, tty=sys.stdout.isatty())
    return 0


def cmd_status(args, extra) -> int:
    if not args.run and not records.records():
        target = resolve_target(args)
        connect_box(args, target).close()
        print(f"{target.label}: reachable; no runs started from here yet")
        return 0
    from remote import interruptions

    rec, target, run_dir = run_of(args)
    with box_session(args, target) as conn:
        st = job.job_state(conn, run_dir)
        events = interruptions.parse(run(conn, interruptions.read_command(run_dir), "reading the run's events"))
    events = interruptions.merged(events, interruptions.replacements(rec.box, rec.created))
    if unconfirmed.is_unconfirmed(rec) and not unconfirmed.settle(rec, st):
        print(f"{rec.run_id} not started: its start was cut before the job began on the box")
        return 0
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

    from remote import runs_table

    _ask_unconfirmed(args)
    found = runs_table.rows(records.records(), args.price, args.monitor)
    if args.json:
        print(json.dumps([r.as_dict() for r in found], indent=2))
        return 0
    print(runs_table.table(found) if found else "no runs yet")
    return 0


def _ask_unconfirmed(args) -> None:
    """A run whose start was cut is the one `runs` asks its box about (briefly); unreachable, it stays unconfirmed."""
    from common.errors import TrainboxError
    from remote.connection import connect
    from remote.target import resolve

    for rec in records.records():
        if not unconfirmed.is_unconfirmed(rec):
            continue
        try:
            target = rec.target() if rec.box is None else resolve(rec.box)
            with contextlib.closing(connect(target, timeout=min(args.connect_timeout, 10))) as conn:
                unconfirmed.ask(conn, rec, rec.workdir)
        except TrainboxError as e:
            say(f"run {rec.run_id}: its start is unconfirmed, and its box did not answer ({e.what})")


def cmd_compare(args, extra) -> int:
    """Several pulled runs side by side: one PNG of their curves, a table of their metrics."""
    from remote import compare, runs_table

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
    from remote import tensorboard as tb

    if args.local:
        return _tb_local(args)
    recs = {run_id: records.load_record(run_id) for run_id in args.runs}
    known = [r for r in recs.values() if r is not None]
    target = record_target(args, known[0]) if known else resolve_target(args)
    if len({(r.host, r.port, r.workdir) for r in known}) > 1 and not (args.host or args.name != "default"):
        raise UsageError(
            f"runs {', '.join(args.runs)} are on different boxes",
            "give the runs of one box (`remote runs` says where each is)",
        )
    # A port asked for is held from now on: taken, nothing starts; free, nothing can take it before the tunnel.
    listener = tb.local_listener(args.local_port, True, say) if args.local_port and not args.stop else None
    try:
        with box_session(args, target) as conn:
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
                f"the box (`{PROG} tb --stop{name_flags(args)}`{down} ends it)"
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
    from remote import tensorboard as tb

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
        from remote.target import parse_host

        user, host, port = parse_host(args.host)
        return [r for r in records.records() if (r.host, r.port) == (host, port) and (user is None or r.user == user)]
    return records.records(args.name)


def cmd_report(args, extra) -> int:
    """(Re)write a pulled run's report.html, with its duration and cost."""
    from remote import report

    print(report.write(record_or_latest(args), args.price))
    return 0


def cmd_stop(args, extra) -> int:
    rec, target, run_dir = run_of(args)
    if rec.nodes and len(rec.nodes) > 1:  # every node's job, at once: the others would wait on node 0's
        states = orchestrate.stop_nodes(lambda t: connect_box(args, t), run_nodes(args, rec), rec.run_id)
        for i, node_state in enumerate(states[1:], 1):
            say(f"node {i}: {node_state.label if node_state else 'unknown on the box'}")
        st = states[0]
    else:
        with box_session(args, target) as conn:
            st = job.stop(conn, run_dir)
    _seen(rec, st)
    print(f"{rec.run_id} {st.label if st else 'unknown on the box'}")
    if st and st.stopped and not st.running:
        say(
            f"continue it with `{PROG} {rec.kind} --resume {rec.run_id}{name_flags(args)}`; "
            f"its results so far: `{PROG} pull {rec.run_id}{name_flags(args)}`"
        )
    return 0


def cmd_pull(args, extra) -> int:
    rec, target, run_dir = run_of(args)
    from common.errors import CloudError
    from remote import store_pull

    store = store_pull.store_of(rec.box) if not args.host else None
    try:
        with box_session(args, target) as conn:
            st = job.job_state(conn, run_dir)
            if st is None:
                raise RemoteError(f"run {rec.run_id} is not on the box any more")
            files = results.pull(conn, run_dir, Path(rec.local_dir), out=rec.out)
    except (RemoteError, CloudError) as e:
        if store is None:
            raise
        # A --recover box with no instance that answers (or a new one without the run): S3 has it.
        say(f"box '{rec.box}' has no instance with run {rec.run_id} now ({e.what}): pulling it from S3")
        return _pull_from_store(rec, store)
    rec.pulled = not st.running
    rec.exit_code = st.exit_code
    rec.last_seen = st.label
    records.save_record(rec)
    print(f"pulled {len(files)} files of run {rec.run_id} ({st.label}) into {rec.local_dir}")
    from remote import report

    page = report.refresh(rec) if not st.running else None
    if page:
        say(f"report: {page}")
    return 0


def _pull_from_store(rec: records.RunRecord, store) -> int:
    from remote import store_pull

    got = store_pull.pull_into_record(store, rec, final=False)
    print(f"pulled {len(got.files)} files of run {rec.run_id} ({got.label}) from {got.where} into {rec.local_dir}")
    return 0
