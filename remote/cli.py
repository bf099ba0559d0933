"""``remote``: train on the box from the laptop, and bring every result home.

Thin on purpose: parse, call the library (sync, job, results), print.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shlex
import sys
import time
from pathlib import Path

from provision.cliutil import Parser, positive_float, positive_int, run_cli, say
from provision.errors import RemoteError, TrainingFailed, UsageError

from . import job, results, sync
from .connection import connect, run
from .target import Target, resolve

PROG = "remote"
TF_CHECK = "import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in ('tensorflow', 'keras')) else 1)"


def _target(args) -> Target:
    return resolve(args.name, args.host, args.identity, getattr(args, "python", None))


def _connect(args, target: Target):
    return connect(target, timeout=args.connect_timeout, say=say)


def model_package_dir() -> Path:
    """The local ``model`` package, found without importing it."""
    spec = importlib.util.find_spec("model")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the `model` package is not installed", "pip install trainbox")
    return Path(list(spec.submodule_search_locations)[0])


def dataset_key(path: Path) -> str:
    real = path.resolve()
    return f"{real.name}-{hashlib.sha1(str(real).encode()).hexdigest()[:8]}"


def box_python(conn, target: Target, layout: job.Layout) -> str:
    """The box's interpreter that has TensorFlow and Keras, or RemoteError saying what was tried."""
    tried = [target.python] if target.python else [f"{layout.workdir}/env/bin/python"]
    for python in tried:
        if conn.run(f"{shlex.quote(python)} -c {shlex.quote(TF_CHECK)}", hide=True, warn=True).exited == 0:
            return python
    raise RemoteError(
        f"no Python with TensorFlow and Keras on {target.label} (tried {', '.join(tried)})",
        "run `remote setup` to install trainbox's environment, or pass --python",
    )


def _progress(desc: str):
    def factory(total: int):
        from tqdm import tqdm

        return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, file=sys.stderr,
                    disable=not sys.stderr.isatty(), leave=False)

    return factory


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def push_dir(conn, local: Path, remote_dir: str, what: str) -> sync.Plan:
    started = time.monotonic()
    plan = sync.push(conn, local, remote_dir, _progress(f"push {what}"))
    if plan.noop:
        say(f"{what}: up to date on the box ({plan.files} files, nothing sent)")
    else:
        took = time.monotonic() - started
        say(f"{what}: sent {len(plan.send)} of {plan.files} files ({_human(plan.send_bytes)}) in {took:.1f}s"
            + (f", deleted {len(plan.delete)}" if plan.delete else ""))
    return plan


# ---------------------------------------------------------------- train


def train_args(args, extra: list[str]) -> list[str]:
    out = ["--epochs", str(args.epochs)]
    for flag in ("net", "mode", "batch_size", "image_size", "lr", "seed", "weights", "patience"):
        value = getattr(args, flag)
        if value is not None:
            out += [f"--{flag.replace('_', '-')}", str(value)]
    return out + extra


def cmd_train(args, extra: list[str]) -> int:
    import templates

    target = _target(args)
    if args.data and not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data}: no such directory")
    layout = job.Layout(target.workdir)
    conn = _connect(args, target)
    try:
        python = box_python(conn, target, layout)
        push_dir(conn, model_package_dir(), f"{layout.code}/model", "code")
        if args.data:
            data_dir = layout.data(dataset_key(Path(args.data)))
            push_dir(conn, Path(args.data), data_dir, "data")
        else:
            data_dir = layout.data("synthetic")
            say("no --data given: training on a small synthetic two-class image set generated on the box "
                "(`python -m model synth`); pass --data DIR for your own images")
        run_id = job.new_run_id()
        run_dir = layout.run(run_id)
        script = templates.render(
            "run.sh.j2", run_id=run_id, run_dir=run_dir, code_dir=layout.code, python=python,
            data_dir=data_dir, synth=not args.data, train_args=train_args(args, extra),
        )
        job.start(conn, run_dir, script)
    finally:
        conn.close()
    local_dir = Path(args.runs_dir) / run_id
    rec = results.new_record(run_id, target, local_dir)
    say(f"run {run_id} started on {target.label}; its log follows (Ctrl-C detaches, the job keeps running)")
    if args.detach:
        _print_reattach(args, run_id)
        return 0
    return _follow_and_collect(args, target, rec)


def _name_flags(args) -> str:
    if args.host:
        return f" --host {args.host}" + (f" --identity {args.identity}" if args.identity else "")
    return "" if args.name == "default" else f" --name {args.name}"


def _print_reattach(args, run_id: str) -> None:
    say(f"reattach: `{PROG} logs {run_id} --follow{_name_flags(args)}`; results: `{PROG} pull {run_id}{_name_flags(args)}`")


def _follow_and_collect(args, target: Target, rec: results.RunRecord, offset: int = 0) -> int:
    layout = job.Layout(target.workdir)
    run_dir = layout.run(rec.run_id)
    local_dir = Path(rec.local_dir)
    last_pull = [time.monotonic()]

    def pull_checkpoints(conn):
        if args.pull_every and time.monotonic() - last_pull[0] >= args.pull_every:
            last_pull[0] = time.monotonic()
            try:
                results.pull(conn, run_dir, local_dir, only="checkpoints")
            except RemoteError:
                pass  # nothing yet; the final pull takes everything

    try:
        _, conn = job.follow(lambda: _connect(args, target), run_dir, offset=offset, say=say, on_tick=pull_checkpoints)
    except KeyboardInterrupt:
        say(f"\ndetached from run {rec.run_id}; it keeps running on the box")
        _print_reattach(args, rec.run_id)
        return 130
    try:
        state = job.job_state(conn, run_dir)
        files = results.pull(conn, run_dir, local_dir)
        tail = job.log_tail(conn, run_dir) if not state or state.exit_code != 0 else ""
    finally:
        conn.close()
    rec.pulled = True
    rec.exit_code = state.exit_code if state else None
    results.save_record(rec)
    say(f"results of run {rec.run_id}: {local_dir}/ ({len(files)} files)")
    summary = _summary(local_dir)
    if summary:
        print(summary)
    if rec.exit_code == 0:
        return 0
    if tail:
        say("last lines of the log:\n" + tail.rstrip())
    why = f"exit {rec.exit_code}" if rec.exit_code is not None else "it died without an exit code (killed?)"
    raise TrainingFailed(f"training failed on the box ({why})", f"see {local_dir / 'train.log'}")


def _summary(local_dir: Path) -> str:
    hist = local_dir / "history.json"
    if not hist.exists():
        return ""
    h = json.loads(hist.read_text())
    parts = [f"{len(h.get('loss', []))} epochs"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if h.get(key):
            parts.append(f"{key} {h[key][-1]:.4f}")
    model = local_dir / "model.keras"
    return "trained " + ", ".join(parts) + (f"; model: {model}" if model.exists() else "")


# ---------------------------------------------------------------- the others


def _record_or_latest(args) -> results.RunRecord:
    recs = results.records()
    if args.run:
        rec = results.load_record(args.run)
        if rec is None:
            raise UsageError(f"no run {args.run} is known here", f"`{PROG} runs` lists them")
        return rec
    if not recs:
        raise UsageError("no run is known here yet", f"start one with `{PROG} train --epochs 3`")
    return max(recs, key=lambda r: r.created)


def _rec_target(args, rec: results.RunRecord) -> Target:
    if args.host or rec.box is None:
        return rec.target() if not args.host else _target(args)
    return resolve(rec.box)


def cmd_logs(args, extra) -> int:
    rec = _record_or_latest(args)
    target = _rec_target(args, rec)
    run_dir = job.Layout(target.workdir).run(rec.run_id)
    if args.follow:
        return _follow_and_collect(args, target, rec)
    conn = _connect(args, target)
    try:
        sys.stdout.write(run(conn, f"cat {shlex.quote(run_dir)}/log 2>/dev/null; true", "reading the log"))
    finally:
        conn.close()
    return 0


def cmd_status(args, extra) -> int:
    rec = _record_or_latest(args)
    target = _rec_target(args, rec)
    conn = _connect(args, target)
    try:
        st = job.job_state(conn, job.Layout(target.workdir).run(rec.run_id))
    finally:
        conn.close()
    print(f"{rec.run_id} {st.label if st else 'unknown on the box'}")
    return 0


def cmd_runs(args, extra) -> int:
    recs = results.records(None if args.all else None)
    if not recs:
        print("no runs yet")
        return 0
    print(f"{'run':<22} {'box':<16} {'home':<6} {'exit':<5} local")
    for r in sorted(recs, key=lambda r: r.created):
        code = "-" if r.exit_code is None else str(r.exit_code)
        print(f"{r.run_id:<22} {(r.box or r.host):<16} {'yes' if r.pulled else 'no':<6} {code:<5} {r.local_dir}")
    return 0


def cmd_stop(args, extra) -> int:
    rec = _record_or_latest(args)
    target = _rec_target(args, rec)
    conn = _connect(args, target)
    try:
        st = job.stop(conn, job.Layout(target.workdir).run(rec.run_id))
    finally:
        conn.close()
    print(f"{rec.run_id} {st.label if st else 'unknown on the box'}")
    return 0


def cmd_pull(args, extra) -> int:
    rec = _record_or_latest(args)
    target = _rec_target(args, rec)
    conn = _connect(args, target)
    run_dir = job.Layout(target.workdir).run(rec.run_id)
    try:
        st = job.job_state(conn, run_dir)
        if st is None:
            raise RemoteError(f"run {rec.run_id} is not on the box any more")
        files = results.pull(conn, run_dir, Path(rec.local_dir))
    finally:
        conn.close()
    rec.pulled = not st.running
    rec.exit_code = st.exit_code
    results.save_record(rec)
    print(f"pulled {len(files)} files of run {rec.run_id} ({st.label}) into {rec.local_dir}")
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Train on the box from this laptop; bring every result home.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(name, func, help):
        c = sub.add_parser(name, help=help, description=help)
        c.add_argument("--name", default="default", help="the provisioned box (default: %(default)s)")
        c.add_argument("--host", help="any SSH host instead: [user@]host[:port]")
        c.add_argument("--identity", help="private key for --host")
        c.add_argument("--connect-timeout", type=positive_float, default=30.0, help="seconds to keep trying to connect (default: %(default)s)")
        c.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")
        c.set_defaults(func=func)
        return c

    c = command("train", cmd_train, "Push the model package and the data, train detached on the box, stream the log, pull the results into runs/RUN-ID/.")
    c.add_argument("--epochs", type=positive_int, required=True, help="epochs to train")
    c.add_argument("--data", help="a local dataset directory (train/ and validation/, one folder per class); default: a synthetic set")
    c.add_argument("--net", choices=["cnn", "vgg16"], help="the network (model default: cnn)")
    c.add_argument("--mode", choices=["bottleneck", "finetune"], help="vgg16 only: train a head on frozen features, or fine-tune the last block")
    c.add_argument("--batch-size", type=positive_int)
    c.add_argument("--image-size", type=positive_int)
    c.add_argument("--lr", type=positive_float)
    c.add_argument("--seed", type=int)
    c.add_argument("--weights", help="vgg16 weights: imagenet (downloaded on the box), none, or a path on the box")
    c.add_argument("--patience", type=positive_int, help="early stopping patience in epochs")
    c.add_argument("--python", help="the interpreter on the box to train with (default: trainbox's environment)")
    c.add_argument("--detach", action="store_true", help="start the job and return at once")
    c.add_argument("--runs-dir", default="runs", help="where results land locally (default: %(default)s/)")
    c.add_argument("--pull-every", type=positive_float, default=60.0, help="seconds between checkpoint pulls while training (default: %(default)s)")

    for name, func, help in (
        ("logs", cmd_logs, "Print a run's log (default: the latest run); --follow streams it until the run ends, then pulls."),
        ("status", cmd_status, "Say whether a run is running, succeeded or failed."),
        ("stop", cmd_stop, "Stop a running job on the box."),
        ("pull", cmd_pull, "Bring a run's results home into runs/RUN-ID/."),
    ):
        c = command(name, func, help)
        c.add_argument("run", nargs="?", help="the run id (default: the latest)")
        if name == "logs":
            c.add_argument("--follow", "-f", action="store_true", help="stream until the run ends, then pull its results")
            c.add_argument("--pull-every", type=positive_float, default=60.0, help=argparse.SUPPRESS)
    c = command("runs", cmd_runs, "List the runs started from this laptop and whether their results are home.")
    c.add_argument("--all", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return run_cli(lambda a: a.func(a, extra), args)
