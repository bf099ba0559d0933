"""A run, from the laptop: push the code, make its environment ready, bring its
data, start its command detached on the box, follow its log, bring its
results home; resume it, on its box or on another one.

One machinery for every run. A ``RunSpec`` says what to run: ``remote run``
builds one from your project and command, ``remote train`` the built-in one
(remote/builtin.py: the model package and its flags). Nothing here knows what
the command is. Library code: progress goes to the ``say`` it is given, errors
are raised, the CLI (cli/remote_*.py) prints and exits. Over 300 lines: the
whole life of a run (push, environment, data, start, resume, follow, collect)
is one story, told here in order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from box.layout import DEFAULT_BACKEND, BoxLayout, env_name
from common.errors import RemoteError, UsageError

from . import job, records, results, sync
from .connection import during, run
from .target import Target

Say = Callable[[str], None]

# A project bigger than this (its pushed set) asks before it is pushed: data belongs in --data.
PROJECT_LIMIT_BYTES = 200 * 1024 * 1024
TF_CHECK = "import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in ('tensorflow', 'keras')) else 1)"
JAX_CHECK = TF_CHECK.replace("'keras')", "'keras', 'jax')")


@dataclass(frozen=True)
class RunSpec:
    """What a run is: the same spec started again is the same run (``--resume``)."""

    code: Path  # the local project, pushed (the ignore rules of remote/ignore.py apply)
    command: tuple[str, ...]  # argv, run exactly as given in the pushed project
    data: str | None = None  # --data as given (a local dir made absolute); None: none
    requirements: Path | None = None  # installed into the run's environment, beside trainbox's pins
    out: str = "out"  # TRAINBOX_OUT, relative to the run dir: what comes home
    kind: str = "run"  # "run" (remote run) or "train" (the built-in), for the records and messages
    # The code is one Python package, pushed as the folder of its name in the
    # box's shared code dir (the built-in model/), instead of a project of its own.
    package: bool = False
    # No --data: ``python <synth...> DIR`` makes a data set in DIR on the box, once.
    synth: tuple[str, ...] = ()
    # What a local copy must hold for --resume on a box that never saw the run.
    resume_state: str | None = None
    exclude: tuple[Path, ...] = ()  # local paths never pushed (the laptop's runs dir)
    backend: str = DEFAULT_BACKEND  # Keras's (KERAS_BACKEND), and which environment runs it

    @property
    def key(self) -> str:
        """The project's name on the box: its folder and, with requirements, its environment."""
        return path_key(self.code)

    def record_fields(self) -> dict:
        return {
            "kind": self.kind,
            "data": self.data,
            "command": list(self.command),
            "code": None if self.package else str(self.code),
            "requirements": str(self.requirements) if self.requirements else None,
            "out": self.out,
            "backend": self.backend,
        }


@dataclass(frozen=True)
class Outcome:
    """How a followed run ended, once its results are home."""

    run_id: str
    local_dir: Path
    exit_code: int | None  # None: it died or was stopped
    stopped: bool  # by `remote stop`
    files: int  # pulled at the end
    tail: str  # the log's last lines when it did not succeed
    detached: bool = False  # Ctrl-C: it keeps running on the box, nothing pulled


def spec_from_record(rec: records.RunRecord, exclude: tuple[Path, ...] = ()) -> RunSpec | None:
    """How a recorded `remote run` was started, or None when the record does not say."""
    if rec.command is None or rec.code is None:
        return None
    return RunSpec(
        code=Path(rec.code),
        command=tuple(rec.command),
        data=rec.data,
        requirements=Path(rec.requirements) if rec.requirements else None,
        out=rec.out,
        exclude=exclude,
        backend=rec.backend,
    )


def notebook_place(rec: records.RunRecord | None, workdir: str) -> tuple[str | None, str | None]:
    """Where `nb` opens for a box whose latest run is ``rec``: the pushed
    project of a `remote run` and, with requirements, its environment's link
    (the box paths relative to the home, as the workdir is); (None, None) else."""
    if rec is None or rec.kind != "run" or not rec.code:
        return None, None
    layout, key = BoxLayout(workdir), path_key(Path(rec.code))
    return layout.project(key), layout.with_env(key).env_link if rec.requirements else None


def path_key(path: Path) -> str:
    real = Path(path).resolve()
    return f"{real.name}-{hashlib.sha1(str(real).encode()).hexdigest()[:8]}"


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# ---------------------------------------------------------------- pushing


def push_dir(
    conn, local: Path, remote_dir: str, what: str, say: Say, progress=None, scan: dict | None = None, skip=None
) -> sync.Plan:
    started = time.monotonic()
    plan = sync.push(conn, local, remote_dir, progress(f"push {what}") if progress else None, local=scan, skip=skip)
    if plan.noop:
        say(f"{what}: up to date on the box ({plan.files} files, nothing sent)")
    else:
        took = time.monotonic() - started
        say(
            f"{what}: sent {len(plan.send)} of {plan.files} files ({human(plan.send_bytes)}) in {took:.1f}s"
            + (f", deleted {len(plan.delete)}" if plan.delete else "")
        )
    return plan


def scan_project(spec: RunSpec, confirm: Callable[[str], bool]) -> tuple[dict, Callable[[str, bool], bool]]:
    """The project's pushed set, a big one only if confirm(question) says yes,
    and the filter that made it (what the push leaves alone on the box)."""
    from .ignore import ProjectFilter

    skip = ProjectFilter(spec.code, exclude=spec.exclude).skip
    scan = sync.scan_local(spec.code, skip)
    size = sum(e.size for e in scan.values())
    if size > PROJECT_LIMIT_BYTES:
        biggest = sorted(scan, key=lambda p: scan[p].size, reverse=True)[:3]
        question = (
            f"the project {spec.code} is {human(size)} in {len(scan)} files (biggest: {', '.join(biggest)}); "
            f"push it all?"
        )
        if not confirm(question):
            raise UsageError(
                f"the project {spec.code} is {human(size)} of code (over {human(PROJECT_LIMIT_BYTES)}): "
                "data belongs in --data",
                "pass --data DIR for the data, list what is not code in .trainboxignore, or push it anyway with --yes",
            )
    return scan, skip


# ---------------------------------------------------------------- the environment


def run_interpreter(
    conn, target: Target, layout: BoxLayout, spec: RunSpec, requirements_on_box: str | None, say: Say
) -> tuple[str, str | None]:
    """The interpreter the run uses and, for an environment trainbox built, its link.

    ``--python`` (or the box's state) wins, as it is; otherwise trainbox's
    environment (with the project's requirements: the project's own), set up
    first when it is not ready (waiting for a boot-time setup that is running).
    """
    from . import setup

    if target.python:
        if spec.requirements:
            say(f"--python {target.python}: {spec.requirements} is not installed (that interpreter is used as it is)")
        jax = spec.backend == "jax"
        if (
            conn.run(
                f"{shlex.quote(target.python)} -c {shlex.quote(JAX_CHECK if jax else TF_CHECK)}",
                hide=True,
                warn=True,
                in_stream=False,
            ).exited
            != 0
        ):
            raise RemoteError(
                f"no Python with TensorFlow{', JAX' if jax else ''} and Keras on {target.label} (tried {target.python})",
                f"run `remote setup{' --backend jax' if jax else ''}` to install trainbox's environment, or pass --python",
            )
        return target.python, None
    opts = setup.SetupOptions.from_env(backend=spec.backend)
    key = None
    if spec.requirements:
        key = spec.key
        opts = project_options(opts, spec.code, spec.requirements, requirements_on_box)
    return setup.ensure(conn, layout.workdir, opts, say), layout.with_env(key, spec.backend).env_link


def project_options(opts, code: Path, requirements: Path, on_box: str | None = None):
    """The SetupOptions of a project's own environment (its requirements beside trainbox's pins): its
    link's name and the digest of its requirements; on_box: the requirements file as the box sees it."""
    from . import setup

    return dataclasses.replace(
        opts,
        env_name=env_name(path_key(code), opts.backend),
        project_requirements=on_box,
        requirements_digest=setup.requirements_digest(requirements),
    )


def requirements_alone(conn, workdir: str, code: Path, requirements: Path) -> str:
    """The requirements file written beside the box's projects (``remote setup --code``: no project
    is pushed), as the box sees it; one that includes others (-r, -c) needs its project: refused."""
    from .connection import write_file

    text = requirements.read_bytes()
    for line in text.decode(errors="replace").splitlines():
        parts = line.split("#", 1)[0].split()
        if (
            parts
            and parts[0] in ("-r", "-c", "--requirement", "--constraint")
            or any(p.startswith(("--requirement=", "--constraint=")) for p in parts)
        ):
            raise UsageError(
                f"{requirements} includes other files ({line.strip()}): `remote setup --code` sends it alone",
                f"`remote run --code {shlex.quote(str(code))} -- COMMAND` pushes the project with them and builds its environment",
            )
    on_box = BoxLayout(workdir).requirements(path_key(code))
    write_file(conn, on_box, text)
    return on_box


def _requirements_on_box(conn, spec: RunSpec, layout: BoxLayout, project_dir: str, scan: dict) -> str | None:
    """The requirements file as the box sees it: in the pushed project, else written beside it."""
    if not spec.requirements:
        return None
    from .connection import write_file

    real = spec.requirements.resolve()
    try:
        rel = real.relative_to(spec.code.resolve()).as_posix()
    except ValueError:
        rel = None
    if rel in scan:
        return f"{project_dir}/{rel}"
    write_file(conn, layout.requirements(spec.key), real.read_bytes())
    return layout.requirements(spec.key)


# ---------------------------------------------------------------- starting


def start(
    conn,
    target: Target,
    spec: RunSpec,
    run_id: str,
    say: Say,
    *,
    quiet: bool = False,
    progress=None,
    confirm: Callable[[str], bool] = lambda q: False,
    seed: Path | None = None,
    node: tuple[int, int, str] | None = None,
    ready: Callable[[], object] | None = None,
) -> int:
    """Push the code, make the environment ready, bring the data, start the run detached.

    ``seed``: a local copy of the run's results to continue from (resuming on a
    box that never saw it). ``node``: (index, nodes, coordinator) of a
    multi-node run; ``ready``: called once all is in place, just before the job
    starts (the nodes of one run wait there for each other). Returns the log's
    size before the job started, to follow from.
    """
    # run.sh cds into its run dir: every path on the box from here on (the
    # data a fetch returns included) comes from this one absolute layout.
    again = f"run the same `remote {spec.kind}` command again: it goes on from what the box already has"
    layout = job.resolve_layout(conn, target.workdir)
    scan, skip = scan_project(spec, confirm)
    with during(conn, "the push of the code", again):
        if spec.package:
            project_dir = layout.code
            push_dir(conn, spec.code, f"{layout.code}/{spec.code.name}", "code", say, progress, scan, skip)
        else:
            project_dir = layout.project(spec.key)
            push_dir(conn, spec.code, project_dir, "code", say, progress, scan, skip)
    with during(conn, "the environment's setup", again):
        python, env_link = run_interpreter(
            conn, target, layout, spec, _requirements_on_box(conn, spec, layout, project_dir, scan), say
        )
    with during(conn, "the data's transfer", again):
        data_dir, data = _data(conn, spec, layout, python, project_dir, say, progress, quiet)

    run_dir = layout.run(run_id)
    offset = 0
    if seed is not None:
        out = shlex.quote(spec.out)
        home_only = lambda rel, is_dir: rel == results.PULLED  # noqa: E731 (the pulls' own record stays home)
        push_dir(
            conn,
            seed,
            f"{run_dir}/{spec.out}",
            "the run's local copy",
            say,
            progress,
            sync.scan_local(seed, home_only),
            home_only,
        )
        # The local layout back into the box's: train.log is the run's log, and
        # the count of starts goes on.
        offset = int(
            run(
                conn,
                f"cd {shlex.quote(run_dir)} && rm -f {out}/{sync.MARKER} {out}/exit_code {out}/run.sh && "
                f"if [ -e {out}/train.log ]; then mv {out}/train.log log; fi && "
                f"if [ -e {out}/resumed ]; then mv {out}/resumed resumed; else echo 0 > resumed; fi && "
                "touch log && stat -c %s log",
                "restoring the run's log",
            )
            .strip()
            .splitlines()[-1]
        )
    # What the script runs, and what a new instance needs to run it again (a --recover box's run.json).
    same = dict(env_link=env_link, data_dir=data_dir, out=spec.out, backend=spec.backend)
    script = job.render_script(
        layout,
        run_id,
        project_dir,
        list(spec.command),
        python=python,
        resume_hint=f"remote {spec.kind} --resume",
        **same,  # type: ignore[arg-type]
        **({"node": node[0], "nodes": node[1], "coordinator": node[2]} if node else {}),  # type: ignore[arg-type]
    )
    run_spec = job.run_spec(run_id, project_dir, list(spec.command), data=data, **same)  # type: ignore[arg-type]
    if ready is not None:
        ready()
    with during(
        conn,
        f"the start of run {run_id}",
        f"run the same `remote {spec.kind}` command again: it says so if the run did start (it then runs on in "
        f"{run_dir} on the box), else starts it; `remote status {run_id}` asks the box",
    ):
        job.start(conn, run_dir, script, run_spec)
    return offset


def _data(
    conn, spec: RunSpec, layout: BoxLayout, python: str, project_dir: str, say: Say, progress, quiet: bool
) -> tuple[str | None, dict | None]:
    """The run's data on the box (pushed, fetched by the box, or generated there): its folder, and
    what run.json says of it ({"key": its folder under the data root, "source", "fetch": a URL's
    plan, which a new instance of a --recover box runs again}), or (None, None)."""
    from . import datasource, fetch

    source = datasource.parse(spec.data) if spec.data else None
    if isinstance(source, datasource.LocalSource):
        key = path_key(source.path)
        data_dir = layout.data(key)
        push_dir(conn, source.path, data_dir, "data", say, progress)
        return data_dir, {"key": key, "source": "local", "fetch": None}
    if source is not None:
        got = fetch.fetch(conn, source, layout.workdir, python, layout.code, quiet=quiet, say=say)
        say(
            f"data: {source} {'cached on the box' if got.cached else 'fetched by the box'} "
            f"({got.files} files, {human(got.bytes)}) in {got.path}"
        )
        if isinstance(source, datasource.UrlSource):
            plan = fetch.url_plan(source, layout.workdir, python, layout.code, True)
            return got.path, {"key": got.key, "source": "url", "fetch": plan}
        kind = "s3" if isinstance(source, datasource.S3Source) else "kaggle"
        return got.path, {"key": got.key, "source": kind, "fetch": None}
    if spec.synth:
        data_dir = layout.data("synthetic")
        _synthesize(conn, python, project_dir, spec.synth, data_dir, say)
        return data_dir, {"key": "synthetic", "source": "synthetic", "fetch": None}
    return None, None


FREE_PORT = "import socket; s = socket.socket(); s.bind(('', 0)); print(s.getsockname()[1])"


def _each(targets: list[Target], work: Callable[[int, Target], object]) -> list:
    """work(i, target) on every node at once; the first error (in node order) is raised once all have ended."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        futures = [pool.submit(work, i, t) for i, t in enumerate(targets)]
    # A node that only stood down because another failed first (a broken
    # barrier) is not the news: the node that failed is.
    failed = [i for i, f in enumerate(futures) if f.exception() is not None]
    if failed:
        i = min(failed, key=lambda i: (isinstance(futures[i].exception(), threading.BrokenBarrierError), i))
        e = futures[i].exception()
        assert e is not None  # i is one of the failed
        if isinstance(e, RemoteError | UsageError) and len(targets) > 1:
            e.what = f"node {i} ({targets[i].label}): {e.what}"
        raise e
    return [f.result() for f in futures]


def start_nodes(
    connect: Callable[[Target], Any],
    targets: list[Target],
    spec: RunSpec,
    run_id: str,
    say: Say,
    *,
    quiet: bool = True,
    confirm: Callable[[str], bool] = lambda q: False,
) -> None:
    """A multi-node run: the code, the environment and the data brought to every
    node in parallel, then one job per node, told its place (TRAINBOX_NODE...)
    and node 0's address inside the box's network (its private one; else
    its host) with a port free there as the coordinator's."""
    conn0 = connect(targets[0])
    try:
        port = (
            run(
                conn0,
                f"{shlex.quote(targets[0].python or 'python3')} -c {shlex.quote(FREE_PORT)}",
                "finding a free port on node 0",
            )
            .strip()
            .splitlines()[-1]
        )
    finally:
        conn0.close()
    coordinator = f"{targets[0].private_address or targets[0].host}:{int(port)}"
    say(f"{len(targets)} nodes; the coordinator: node 0 at {coordinator}")

    # No node's job starts until every node is ready: a node that fails its
    # push, environment or data leaves no job waiting on it for its peer.
    gate = threading.Barrier(len(targets))

    def one(i: int, target: Target) -> None:
        conn = connect(target)
        try:
            start(
                conn,
                target,
                spec,
                run_id,
                lambda line: say(f"node {i}: {line}"),
                quiet=quiet,
                confirm=confirm,
                node=(i, len(targets), coordinator),
                ready=gate.wait,
            )
        except BaseException:
            gate.abort()
            raise
        finally:
            conn.close()

    _each(targets, one)


def restart_nodes(
    connect: Callable[[Target], Any], targets: list[Target], run_id: str, say: Say, flags: str = ""
) -> int:
    """Every node of a stopped or failed multi-node run starts its run.sh again; node 0's log offset."""
    gate = threading.Barrier(len(targets))  # every node checked before any restarts

    def one(i: int, target: Target) -> int:
        conn = connect(target)
        try:
            run_dir = BoxLayout(target.workdir).run(run_id)
            st = job.job_state(conn, run_dir)
            if st is None:
                raise RemoteError(
                    f"run {run_id} is not on node {i} ({target.label}) any more",
                    "a multi-node run resumes on the nodes it ran on; start a new one with `remote train`",
                )
            if st.running:
                raise UsageError(
                    f"run {run_id} is still running on node {i}",
                    f"follow it with `remote logs {run_id} --follow{flags}`",
                )
            if i == 0 and st.exit_code == 0:  # the run's outcome is node 0's
                raise UsageError(
                    f"run {run_id} succeeded: there is nothing to resume",
                    "start a new run with `remote train` (`remote runs` shows how this one was started)",
                )
            gate.wait()
            return job.restart(conn, run_dir)
        except BaseException:
            gate.abort()
            raise
        finally:
            conn.close()

    return _each(targets, one)[0]


def stop_nodes(connect: Callable[[Target], Any], targets: list[Target], run_id: str) -> list[job.JobState | None]:
    """Stop a multi-node run's job on every node at once; each node's state after (None: not there)."""

    def one(i: int, target: Target) -> job.JobState | None:
        conn = connect(target)
        try:
            return job.stop(conn, BoxLayout(target.workdir).run(run_id))
        finally:
            conn.close()

    return _each(targets, one)


def _synthesize(conn, python: str, project_dir: str, synth: tuple[str, ...], data_dir: str, say: Say) -> None:
    """The spec's generated data set, made once per box (a marker says it is whole)."""
    d, mark = shlex.quote(data_dir), shlex.quote(f"{data_dir}/{sync.MARKER}")
    if conn.run(f"test -e {mark}", hide=True, warn=True, in_stream=False).exited == 0:
        return
    say(f"generating a data set on the box ({' '.join(synth)})")
    argv = " ".join(shlex.quote(a) for a in (python, *synth, data_dir))
    run(
        conn,
        f"rm -rf {d} && cd {shlex.quote(project_dir)} && PYTHONPATH={shlex.quote(project_dir)} {argv} && date > {mark}",
        "generating the data set on the box",
    )


# ---------------------------------------------------------------- resuming


def new_run_command(rec: records.RunRecord) -> str:
    """The command that starts a new run as rec was started."""
    if rec.kind == "train":
        model_args = (
            list(rec.command[4:]) if rec.command and rec.command[:1] == ["bash"] else list(rec.train_args or [])
        )
        data = f" --data {shlex.quote(rec.data)}" if rec.data else ""
        return f"remote train {shlex.join(model_args)}{data}".rstrip()
    return f"remote run -- {shlex.join(rec.command or ['COMMAND'])}"


def local_exit_code(rec: records.RunRecord) -> int | None:
    """The run's exit code as this laptop knows it: its record, else the exit_code its pull brought home."""
    if rec.exit_code is not None:
        return rec.exit_code
    try:
        return int((Path(rec.local_dir) / job.RUN_EXIT_CODE).read_text().strip())
    except (OSError, ValueError):
        return None


def refuse_if_succeeded(rec: records.RunRecord, exit_code: int | None) -> None:
    """--resume continues a run that failed or was stopped: one that succeeded
    is over (resuming it would train again over its results)."""
    if exit_code == 0:
        raise UsageError(
            f"run {rec.run_id} succeeded: there is nothing to resume (its results: {rec.local_dir})",
            f"start a new run with `{new_run_command(rec)}`",
        )


def resume(
    conn,
    target: Target,
    rec: records.RunRecord,
    spec: RunSpec | None,
    say: Say,
    *,
    flags: str = "",
    quiet: bool = False,
    progress=None,
) -> tuple[int, str]:
    """Start a stopped or killed run again, in its run dir on target: there if
    the box has it, else rebuilt from its local copy (``spec`` is how it was
    started). The same command runs again with TRAINBOX_RESUMED one higher;
    returns the log offset to follow from and a few words on what it had."""
    run_dir = BoxLayout(target.workdir).run(rec.run_id)
    st = job.job_state(conn, run_dir)
    if st is not None and st.running:
        raise UsageError(
            f"run {rec.run_id} is still running", f"follow it with `remote logs {rec.run_id} --follow{flags}`"
        )
    refuse_if_succeeded(rec, st.exit_code if st is not None else local_exit_code(rec))
    if st is not None:
        return job.restart(conn, run_dir), f"it had {st.label}"
    local = Path(rec.local_dir)
    need = local / spec.resume_state if spec and spec.resume_state else local
    if spec is None or not need.is_dir():
        what = f" ({spec.resume_state}/)" if spec and spec.resume_state else ""
        raise RemoteError(
            f"run {rec.run_id} is not on {target.label} and its local copy {local} has no resume state{what}",
            f"bring it home from the box it ran on with `remote pull {rec.run_id}`, or start a new run with `remote {rec.kind}`",
        )
    offset = start(conn, target, spec, rec.run_id, say, quiet=quiet, progress=progress, seed=local)
    return offset, f"from its local copy {local}"


# ---------------------------------------------------------------- following and collecting


def follow_and_collect(
    connect: Callable[[], Any],
    target: Target,
    rec: records.RunRecord,
    say: Say,
    *,
    offset: int = 0,
    pull_every: float | None = None,
    reconnect_for: float | None = 300.0,
    tty: bool = False,
) -> Outcome:
    """Stream the run's log until it ends (pulling ``checkpoints/`` every
    pull_every seconds on the way), then pull everything and record it.
    A box that goes away is waited for up to reconnect_for seconds (None: until
    Ctrl-C, for a provisioned box whose agent resumes the run when it is back).
    tty: the laptop's stdout is a terminal (job.follow)."""
    run_dir = BoxLayout(target.workdir).run(rec.run_id)
    local_dir = Path(rec.local_dir)
    last_pull = [time.monotonic()]

    def pull_checkpoints(conn):
        if pull_every and time.monotonic() - last_pull[0] >= pull_every:
            last_pull[0] = time.monotonic()
            try:
                results.pull(conn, run_dir, local_dir, only="checkpoints", out=rec.out)
            except RemoteError:
                pass  # nothing yet; the final pull takes everything

    try:
        _, conn = job.follow(
            connect, run_dir, offset=offset, say=say, on_tick=pull_checkpoints, reconnect_for=reconnect_for, tty=tty
        )
    except KeyboardInterrupt:
        return Outcome(rec.run_id, local_dir, None, False, 0, "", detached=True)
    try:
        state = job.job_state(conn, run_dir)
        if state is not None and (rec.exit_code, rec.last_seen) != (state.exit_code, state.label):
            # Known before the pull: a pull that fails still leaves the code recorded.
            rec.exit_code, rec.last_seen = state.exit_code, state.label
            records.save_record(rec)
        files = results.pull(conn, run_dir, local_dir, out=rec.out)
        tail = job.log_tail(conn, run_dir) if not state or state.exit_code != 0 else ""
    finally:
        conn.close()
    rec.pulled = True
    rec.exit_code = state.exit_code if state else None
    rec.last_seen = state.label if state else None
    records.save_record(rec)
    return Outcome(rec.run_id, local_dir, rec.exit_code, bool(state and state.stopped), len(files), tail)
