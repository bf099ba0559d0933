"""``remote``: train on the box from the laptop, and bring every result home.

Thin on purpose: parse, call the library (sync, job, results), print.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
from .target import Target, current, resolve

PROG = "remote"
TF_CHECK = "import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in ('tensorflow', 'keras')) else 1)"


def _target(args) -> Target:
    return _wake(args, resolve(args.name, args.host, args.identity, getattr(args, "python", None), getattr(args, "workdir", None)))


def _wake(args, target: Target) -> Target:
    """``--start``: a provisioned box that is not running is started (and
    waited for) first; its address may have changed, so it is resolved again."""
    if not getattr(args, "start", False) or not target.box:
        return target
    from provision import lifecycle, state

    cloud = lifecycle.cloud_of(state.load(target.box))
    now = lifecycle.status(cloud, target.box).state
    if now == "running":
        return target
    say(f"box '{target.box}' is {now}: starting it (--start)")
    lifecycle.start(cloud, target.box)
    woken = resolve(target.box)
    return dataclasses.replace(woken, python=target.python, workdir=target.workdir)


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
    """The box's interpreter that has TensorFlow and Keras, or RemoteError saying what was tried.

    ``--python`` (or the box's state) wins; otherwise trainbox's own env, set up
    first when it is not ready (waiting for a boot-time setup that is running).
    """
    if not target.python:
        from . import setup

        return setup.ensure(conn, layout.workdir, setup.SetupOptions.from_env(), say)
    tried = [target.python]
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
    from . import datasource

    if args.resume:
        if extra or args.data:
            raise UsageError(f"--resume re-runs the run as it was started: drop {' '.join(extra) or '--data'}")
        return _resume(args)
    if args.epochs is None:
        raise UsageError("train needs --epochs N (or --resume RUN)", f"see `{PROG} train --help`")
    data = args.data
    if data and isinstance(datasource.parse(data), datasource.LocalSource):
        data = str(Path(data).expanduser().resolve())
        datasource.check_image_folders(Path(data))
    target = _target(args)
    run_id = job.new_run_id()
    argv = train_args(args, extra)
    with _on_box(args, target) as conn:
        _start_run(conn, target, run_id, data, argv, args.quiet)
    rec = results.new_record(run_id, target, Path(args.runs_dir) / run_id, data, argv)
    say(f"run {run_id} started on {target.label}; its log follows (Ctrl-C detaches, the job keeps running)")
    if args.detach:
        _print_reattach(args, run_id)
        return 0
    return _follow_and_collect(args, target, rec)


def _start_run(conn, target: Target, run_id: str, data: str | None, argv: list[str], quiet: bool,
               seed: Path | None = None) -> int:
    """Make the box ready, push the code and the data, start the run detached.

    ``seed``: a local copy of the run's results whose resume state the run
    continues from (resuming on a box that never saw it). Returns the log's
    size before the job started, to follow from.
    """
    from . import datasource, fetch, setup

    source = datasource.parse(data) if data else None
    # run.sh cds into its run dir: every path on the box from here on (the
    # data a fetch returns included) comes from this one absolute layout.
    layout = job.resolve_layout(conn, target.workdir)
    python = box_python(conn, target, layout)
    push_dir(conn, model_package_dir(), f"{layout.code}/model", "code")
    if isinstance(source, datasource.LocalSource):
        data_dir = layout.data(dataset_key(Path(data)))
        push_dir(conn, Path(data), data_dir, "data")
    elif source is not None:
        got = fetch.fetch(conn, source, layout.workdir, python, layout.code, quiet=quiet, say=say)
        data_dir = got.path
        say(f"data: {source} {'cached on the box' if got.cached else 'fetched by the box'} "
            f"({got.files} files, {_human(got.bytes)}) in {data_dir}")
    else:
        data_dir = layout.data("synthetic")
        say("no --data given: training on a small synthetic two-class image set generated on the box "
            "(`python -m model synth`); pass --data DIR for your own images")
    run_dir = layout.run(run_id)
    offset = 0
    if seed is not None:
        push_dir(conn, seed, f"{run_dir}/out", "the run's local copy")
        # The local layout back into the box's: train.log is the run's log.
        offset = int(run(conn, f"cd {shlex.quote(run_dir)} && rm -f out/{sync.MARKER} out/exit_code out/run.sh && "
                               "if [ -e out/train.log ]; then mv out/train.log log; fi && touch log && stat -c %s log",
                         "restoring the run's log").strip().splitlines()[-1])
    env_link = None if target.python else setup.env_dir(layout.workdir)
    script = job.render_script(layout, run_id, python, layout.code, data_dir, source is None, argv, env_link)
    job.start(conn, run_dir, script)
    return offset


def _resume(args) -> int:
    """Continue a killed or interrupted run: on its box, run its script again
    in its run dir (the model's BackupAndRestore state there resumes it at
    the epoch after the last one saved, and the log goes on where it
    stopped); on a box that does not have it, rebuild it there from its
    local copy (pulled by `remote pull` or `provision down`)."""
    rec = results.load_record(args.resume)
    if rec is None:
        raise UsageError(f"no run {args.resume} is known here", f"`{PROG} runs` lists them")
    target = _rec_target(args, rec)
    if args.python:
        target = dataclasses.replace(target, python=args.python)
    run_dir = job.Layout(target.workdir).run(rec.run_id)
    with _on_box(args, target) as conn:
        st = job.job_state(conn, run_dir)
        if st is None:
            offset = _resume_elsewhere(conn, args, target, rec)
            had = f"from its local copy {rec.local_dir}"
        elif st.running:
            raise UsageError(f"run {rec.run_id} is still running",
                             f"follow it with `{PROG} logs {rec.run_id} --follow{_name_flags(args)}`")
        else:
            offset = job.restart(conn, run_dir)
            had = f"it had {st.label}"
    rec.pulled, rec.exit_code = False, None
    results.move_record(rec, target)
    say(f"run {rec.run_id} resumed on {target.label} ({had}); its log follows "
        "(Ctrl-C detaches, the job keeps running)")
    if args.detach:
        _print_reattach(args, rec.run_id)
        return 0
    return _follow_and_collect(args, target, rec, offset=offset)


def _resume_elsewhere(conn, args, target: Target, rec: results.RunRecord) -> int:
    local = Path(rec.local_dir)
    if rec.train_args is None or not (local / "backup").is_dir():
        raise RemoteError(
            f"run {rec.run_id} is not on {target.label} and its local copy {local} has no resume state (backup/)",
            f"bring it home from the box it ran on with `{PROG} pull {rec.run_id}`, or start a new run with `{PROG} train`",
        )
    return _start_run(conn, target, rec.run_id, rec.data, rec.train_args, args.quiet, seed=local)


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
        # A provisioned box is waited for while it is away (a spot stop, a stopped box): its
        # agent resumes the run at boot, and its address is read anew (it may change).
        _, conn = job.follow(lambda: _connect(args, current(target)), run_dir, offset=offset, say=say,
                             on_tick=pull_checkpoints, reconnect_for=None if target.box else 300.0)
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
    if rec.exit_code is None and state and state.stopped:
        raise TrainingFailed(f"run {rec.run_id} was stopped before it finished",
                             f"continue it with `{PROG} train --resume {rec.run_id}{_name_flags(args)}`")
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
    """Where a run lives: --host if given (in the run's workdir unless --workdir), a --name other
    than the default, else where it was started."""
    if args.host:
        return resolve(args.name, args.host, args.identity, None, getattr(args, "workdir", None) or rec.workdir)
    if args.name != "default":
        return _wake(args, resolve(args.name))
    if rec.box is None:
        return rec.target()
    return _wake(args, resolve(rec.box))


def _run_of(args) -> tuple[results.RunRecord, Target, str]:
    """The run a command is about (default: the latest), its box, and its dir there."""
    rec = _record_or_latest(args)
    target = _rec_target(args, rec)
    return rec, target, job.Layout(target.workdir).run(rec.run_id)


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
        return _follow_and_collect(args, target, rec)
    with _on_box(args, target) as conn:
        sys.stdout.write(run(conn, f"cat {shlex.quote(run_dir)}/log 2>/dev/null; true", "reading the log"))
    return 0


def cmd_status(args, extra) -> int:
    if not args.run and not results.records():
        target = _target(args)
        _connect(args, target).close()
        print(f"{target.label}: reachable; no runs started from here yet")
        return 0
    from . import interruptions

    rec, target, run_dir = _run_of(args)
    with _on_box(args, target) as conn:
        st = job.job_state(conn, run_dir)
        events = interruptions.parse(run(conn, interruptions.read_command(run_dir), "reading the run's events"))
    print(f"{rec.run_id} {st.label if st else 'unknown on the box'}")
    for line in interruptions.lines(events):
        print(f"  {line}")
    return 0


def cmd_runs(args, extra) -> int:
    recs = results.records()
    if not recs:
        print("no runs yet")
        return 0
    from . import interruptions

    # Interruptions as of the run's last pull (its events file comes home with it).
    print(f"{'run':<22} {'box':<16} {'home':<6} {'exit':<5} {'interrupted':<22} local")
    for r in sorted(recs, key=lambda r: r.created):
        code = "-" if r.exit_code is None else str(r.exit_code)
        cut = interruptions.summary(interruptions.read_local(Path(r.local_dir)))
        print(f"{r.run_id:<22} {(r.box or r.host):<16} {'yes' if r.pulled else 'no':<6} {code:<5} {cut:<22} {r.local_dir}")
    return 0


def cmd_stop(args, extra) -> int:
    rec, target, run_dir = _run_of(args)
    with _on_box(args, target) as conn:
        st = job.stop(conn, run_dir)
    print(f"{rec.run_id} {st.label if st else 'unknown on the box'}")
    if st and st.stopped and not st.running:
        say(f"continue it with `{PROG} train --resume {rec.run_id}{_name_flags(args)}`; "
            f"its results so far: `{PROG} pull {rec.run_id}{_name_flags(args)}`")
    return 0


def cmd_pull(args, extra) -> int:
    rec, target, run_dir = _run_of(args)
    with _on_box(args, target) as conn:
        st = job.job_state(conn, run_dir)
        if st is None:
            raise RemoteError(f"run {rec.run_id} is not on the box any more")
        files = results.pull(conn, run_dir, Path(rec.local_dir))
    rec.pulled = not st.running
    rec.exit_code = st.exit_code
    results.save_record(rec)
    print(f"pulled {len(files)} files of run {rec.run_id} ({st.label}) into {rec.local_dir}")
    return 0


# ---------------------------------------------------------------- data


def _data_python(target: Target) -> str:
    return target.python or "python3"


def cmd_data_fetch(args, extra) -> int:
    from . import datasource, fetch

    source = datasource.parse(args.src)
    if isinstance(source, datasource.LocalSource):
        raise UsageError(f"{args.src} is a local folder: `{PROG} train --data {args.src}` pushes it",
                         "`data fetch` takes an http(s):// URL or s3://bucket/prefix")
    target = _target(args)
    layout = job.Layout(target.workdir)
    with _on_box(args, target) as conn:
        sync.push(conn, model_package_dir(), f"{layout.code}/model")  # organizing a Kaggle layout runs it
        got = fetch.fetch(conn, source, target.workdir, _data_python(target), layout.code, quiet=args.quiet, say=say)
    state = "already cached" if got.cached else "fetched"
    print(f"{got.key} {state}: {got.files} files, {_human(got.bytes)} at {got.path} on {target.label}")
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
        print(f"{e['key']:<40} {_human(e['bytes']):>9} {e['files']:>7}  {e['source']}")
    return 0


def cmd_data_rm(args, extra) -> int:
    from . import fetch

    target = _target(args)
    with _on_box(args, target) as conn:
        gone = fetch.rm(conn, target.workdir, _data_python(target), args.key)
    print(f"removed {gone['key']} from the box ({gone['files']} files, {_human(gone['bytes'])} freed)")
    return 0


# ---------------------------------------------------------------- setup, doctor


def _setup_options(args):
    from . import setup

    return setup.SetupOptions.from_env(
        index_url=args.index_url, find_links=args.find_links or None, no_index=args.no_index or None,
        jupyter=False if args.no_jupyter else None, installer=args.installer, python=args.box_python,
    )


def cmd_setup(args, extra) -> int:
    from . import setup

    target = _target(args)
    opts = _setup_options(args)
    with _on_box(args, target) as conn:
        python = setup.run_bootstrap(conn, target.workdir, opts, say, force=args.force)
    print(f"ready: {python} on {target.label}")
    return 0


def cmd_doctor(args, extra) -> int:
    from . import doctor

    target = _target(args)
    with _on_box(args, target) as conn:
        rep = doctor.diagnose(conn, target.workdir, _setup_options(args), python=target.python)
    print(doctor.format_report(target.label, rep))
    if rep.problems:
        raise RemoteError(f"the box's environment has problems: {'; '.join(rep.problems)}",
                          f"run `{PROG} setup{_name_flags(args)}`")
    return 0


def _setup_flags(c) -> None:
    c.add_argument("--index-url", help="the package index the box installs from (env TRAINBOX_INDEX_URL; default: the box's pip config, else PyPI)")
    c.add_argument("--find-links", action="append", metavar="DIR_OR_URL", help="also look for wheels here, as the box sees it (repeatable; env TRAINBOX_FIND_LINKS)")
    c.add_argument("--no-index", action="store_true", help="only --find-links, no index (env TRAINBOX_NO_INDEX=1)")
    c.add_argument("--no-jupyter", action="store_true", help="leave jupyterlab out (env TRAINBOX_JUPYTER=0)")
    c.add_argument("--installer", choices=["auto", "uv", "pip"], help="auto: uv when it can be had, else pip (env TRAINBOX_INSTALLER)")
    c.add_argument("--box-python", help="the box's Python 3 the env is made from (default: python3; env TRAINBOX_BOX_PYTHON)")


# ---------------------------------------------------------------- parser


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Train on the box from this laptop; bring every result home.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(name, func, help, parent=None):
        c = (parent or sub).add_parser(name, help=help, description=help)
        c.add_argument("--name", default="default", help="the provisioned box (default: %(default)s)")
        c.add_argument("--host", help="any SSH host instead: [user@]host[:port]")
        c.add_argument("--identity", help="private key for --host")
        c.add_argument("--connect-timeout", type=positive_float, default=30.0, help="seconds to keep trying to connect (default: %(default)s)")
        c.add_argument("--start", action="store_true", help="start the provisioned box first if it is stopped (and wait for it)")
        c.add_argument("--workdir", help="trainbox's directory on the box (default: the box's, or `trainbox` in the login's home)")
        c.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")
        c.set_defaults(func=func)
        return c

    c = command("train", cmd_train, "Push the model package and the data, train detached on the box, stream the log, pull the results into runs/RUN-ID/.")
    c.add_argument("--epochs", type=positive_int, help="epochs to train (required, unless --resume)")
    c.add_argument("--resume", metavar="RUN", help="continue a stopped or killed run from its last saved epoch: on the box it ran on, or, "
                   "with --name/--host, on another box from the local copy that `remote pull` or `provision down` brought home")
    c.add_argument("--data", metavar="SRC", help="a local dataset directory (train/ and validation/, one folder per class), "
                   "an http(s):// URL of a .zip/.tar/.tar.gz/.tgz (optionally #sha256=HEX) or s3://bucket/prefix, "
                   "downloaded by the box itself and cached there; default: a synthetic set")
    c.add_argument("--quiet", action="store_true", help="no download progress lines")
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
    c = command("setup", cmd_setup, "Install trainbox's own Python environment on the box (pinned TensorFlow, Keras, ...); a no-op when it is ready.")
    _setup_flags(c)
    c.add_argument("--force", action="store_true", help="rebuild even if the environment is ready")
    c = command("doctor", cmd_doctor, "Report the box's environment: ready or why not, versions against the laptop's pins, GPUs, driver, CUDA, disk.")
    _setup_flags(c)
    c.add_argument("--python", help="report on this interpreter on the box instead of trainbox's environment")
    c = command("runs", cmd_runs, "List the runs started from this laptop and whether their results are home.")

    data = sub.add_parser("data", help="The box's dataset cache: fetch a URL or S3 prefix onto the box ahead of training, list, free.",
                          description="The box's dataset cache (remote data fetch|ls|rm).")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION", parser_class=Parser)
    c = command("fetch", cmd_data_fetch, "Have the box download SRC into its cache (a re-run downloads only what changed).", dsub)
    c.add_argument("src", metavar="SRC", help="http(s)://.../set.tar.gz[#sha256=HEX] (or .zip/.tar/.tgz), or s3://bucket/prefix")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    c = command("ls", cmd_data_ls, "List the datasets cached on the box, with their sizes.", dsub)
    c = command("rm", cmd_data_rm, "Remove a dataset from the box's cache (KEY as `remote data ls` shows it).", dsub)
    c.add_argument("key", metavar="KEY")
    for c in dsub.choices.values():
        c.add_argument("--python", help="the box's Python 3 that runs the fetch (default: the box's python3)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return run_cli(lambda a: a.func(a, extra), args)
