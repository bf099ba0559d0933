"""trainbox's own Python environment on the box: render the bootstrap, run it, ask if it is ready.

The bootstrap (templates/bootstrap.sh.j2) is the one script both paths run:
user-data at first boot and ``remote setup`` / ``remote train`` over SSH. It
builds ``<workdir>/env`` (a venv, never the system Python) with the pins
below, which are the laptop's ``[train]`` extra (tests/box checks they agree
with pyproject.toml), so ``.keras`` files pulled home load here.

The paths are BoxLayout's (box/layout.py). "Ready" means:
``<workdir>/env/trainbox-ready`` exists and its first line is
``spec <spec_id>``. The marker is written last, so one ``head`` over SSH
answers the question without importing TensorFlow (which takes seconds).

``<workdir>/env`` is a link to ``<workdir>/envs/<spec>.<time>.<pid>``: a
rebuild (other pins, ``--force``) builds a new one and switches the link. A
job resolves the link once and holds a shared lock on that env's marker while
it runs (templates/run.sh.j2), and the bootstrap removes a replaced env only
when it can take that lock exclusively: no rebuild pulls an env from under a
running job.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import box
from box.layout import DEFAULT_BACKEND, BoxLayout, env_name
from common.checks import clean, redact_all, redact_url
from common.errors import RemoteError, UsageError

# The pins: the same as pyproject.toml's [train] extra (a test keeps them equal).
TF_VERSION = "2.21.0"
KERAS_VERSION = "3.15.1"
# Keras's backends a run can pick (`--backend`). JAX's environment keeps
# TensorFlow's CPU build too: model/'s input pipeline is tf.data.
BACKENDS = (DEFAULT_BACKEND, "jax")
JAX_VERSION = "0.10.2"
MODEL_REQUIREMENTS = ("tensorboard==2.21.0", "pillow>=10", "matplotlib>=3.8", "scipy>=1.11")
JUPYTER = "jupyterlab>=4"
FORMAT = 1  # bump when the environment's layout changes: every box rebuilds once

# Free disk the install needs, in MB (wheels + unpacked; the CUDA build is large).
CPU_FREE_MB = 3000
GPU_FREE_MB = 12000

# The bootstrap's exit codes, and what to do about each (the script's own last
# line already says it; these are for a script killed before it could).
EXIT_CODES = {
    10: "no python3 on the box",
    11: "no venv module on the box",
    12: "no network from the box to the package index",
    13: "disk full on the box",
    14: "the box has a GPU but the backend (TensorFlow or JAX) sees none",
    15: "the install failed",
    16: "a job runs in an older trainbox's environment",
    17: "the project's requirements do not install",
}
REQUIREMENTS_FAILED = 17  # the bootstrap's: the install failed and trainbox's pins alone resolve


class RequirementsFailed(UsageError):
    """The project's requirements do not install on the box (trainbox's own pins do):
    the user's input, so exit 64 (EX_USAGE), not a cloud or SSH error. ``box_log``:
    the setup log's path on the box (cli/remote_run.py brings it home and names it)."""

    def __init__(self, what: str, box_log: str, fix: str | None = None, secrets: tuple[str | None, ...] = ()):
        super().__init__(what, fix)
        self.box_log = box_log
        self.secrets = secrets  # the index URLs, redacted from the log brought home


LOG_HOME_BYTES = 1024 * 1024  # the setup log's end, brought home (the box's log keeps every setup's)


def bring_log_home(conn, failed: RequirementsFailed, local: Path) -> Path:
    """The box's setup log (its last MiB, credentials redacted) written to local, 0600; local."""
    from common import paths

    got = conn.run(
        f"tail -c {LOG_HOME_BYTES} {shlex.quote(failed.box_log)}", hide=True, warn=True, in_stream=False
    ).stdout
    local.parent.mkdir(parents=True, exist_ok=True)
    paths.write_private(local, redact_all(got, *failed.secrets))
    return local


def box_path(path: str) -> str:
    """A box path for messages: relative ones are under the login's home."""
    return path if path.startswith("/") else f"~/{path}"


ENV_VARS = {
    "index_url": "TRAINBOX_INDEX_URL",
    "find_links": "TRAINBOX_FIND_LINKS",  # os.pathsep-separated paths or URLs, as the box sees them
    "no_index": "TRAINBOX_NO_INDEX",
    "jupyter": "TRAINBOX_JUPYTER",
    "installer": "TRAINBOX_INSTALLER",
    "python": "TRAINBOX_BOX_PYTHON",
    "system_site_packages": "TRAINBOX_SYSTEM_SITE_PACKAGES",
    "retries": "TRAINBOX_INSTALL_RETRIES",
}


def _flag(text: str) -> bool:
    return text.strip().lower() not in ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class SetupOptions:
    """How the box's environment is built. Flags > environment (ENV_VARS) > these defaults."""

    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    jupyter: bool = True
    installer: str = "auto"  # auto (uv when it can be had, else pip), uv, pip
    python: str = "python3"  # the box's interpreter the venv is made from
    system_site_packages: bool = False
    # Retries of a failed download (pip --retries, UV_HTTP_RETRIES), 1 or more;
    # None: the installers' own (pip 5, uv 3), right for a first boot on a real
    # network. Tests use 1: an unreachable index fails at once.
    retries: int | None = None
    cpu_free_mb: int = CPU_FREE_MB
    gpu_free_mb: int = GPU_FREE_MB
    # A project's environment (`remote run --requirements`): its link's name
    # under the workdir (box.layout.env_name), the requirements file as the box sees
    # it, and the digest of its content, which is part of the spec: a changed
    # file builds a new environment beside the old one.
    env_name: str = "env"
    project_requirements: str | None = None
    requirements_digest: str | None = None
    # Keras's backend the environment is for (BACKENDS): JAX's is an
    # environment of its own (``env-jax``), beside TensorFlow's ``env``.
    backend: str = DEFAULT_BACKEND

    @classmethod
    def from_env(cls, environ=None, **flags) -> SetupOptions:
        env = os.environ if environ is None else environ
        values: dict = {}
        for name, var in ENV_VARS.items():
            text = env.get(var)
            if text is None:
                continue
            if name == "find_links":
                values[name] = tuple(p for p in text.split(os.pathsep) if p)
            elif name in ("no_index", "jupyter", "system_site_packages"):
                values[name] = _flag(text)
            elif name == "retries":
                if not text.strip().isdigit() or int(text) < 1:
                    # pip tells why a download failed only when it retries: 0 would hide "no network".
                    raise UsageError(
                        f"{var}={text!r} is not a number of retries of 1 or more", f"set {var}=3, say, or unset it"
                    )
                values[name] = int(text)
            else:
                values[name] = text
        values.update({k: v for k, v in flags.items() if v is not None})
        if "find_links" in values:
            values["find_links"] = tuple(values["find_links"])
        if values.get("installer", "auto") not in ("auto", "uv", "pip"):
            raise UsageError(f"installer {values['installer']!r} is not one of auto, uv, pip")
        if values.get("backend", DEFAULT_BACKEND) not in BACKENDS:
            raise UsageError(f"backend {values['backend']!r} is not one of {', '.join(BACKENDS)}")
        values.setdefault("env_name", env_name(None, values.get("backend")))
        return cls(**values)

    @property
    def has_credentials(self) -> bool:
        """An index or wheel location with user:password@ in it."""
        return any(redact_url(u) != u for u in (self.index_url, *self.find_links) if u)

    @property
    def requirements(self) -> list[str]:
        """Everything but TensorFlow, whose build the box picks (CUDA, CPU)."""
        return [f"keras=={KERAS_VERSION}", *MODEL_REQUIREMENTS, *([JUPYTER] if self.jupyter else [])]

    def spec_id(self) -> str:
        """What the environment is built from; a box whose marker differs is rebuilt."""
        what = [FORMAT, TF_VERSION, self.requirements, self.python, self.system_site_packages]
        if self.requirements_digest:
            what.append(self.requirements_digest)
        if self.backend != DEFAULT_BACKEND:  # TensorFlow's spec stays what it was: no box rebuilds for this
            what.append([self.backend, JAX_VERSION])
        return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]


def requirements_digest(path) -> str:
    """The digest of a requirements file and of the files its ``-r``/``-c`` lines
    name (relative to it, as pip reads them): what a project's environment is
    keyed by, beside the pins."""
    from pathlib import Path

    h, seen, todo = hashlib.sha256(), set(), [Path(path)]
    while todo:
        f = todo.pop(0).resolve()
        if f in seen or not f.is_file():
            continue
        seen.add(f)
        text = f.read_bytes()
        h.update(f"{len(text)}\n".encode() + text)
        for line in text.decode(errors="replace").splitlines():
            parts = line.split("#", 1)[0].split()
            for flag, value in zip(parts, parts[1:]):
                if flag in ("-r", "-c", "--requirement", "--constraint"):
                    todo.append(f.parent / value)
    return h.hexdigest()[:16]


def render_bootstrap(workdir: str, opts: SetupOptions) -> str:
    """The bootstrap script for a box whose trainbox directory is ``workdir`` (relative to home, or absolute)."""
    import templates

    return templates.render(
        "bootstrap.sh.j2",
        layout=BoxLayout(workdir, opts.env_name),
        project_requirements=opts.project_requirements or "",
        requirements_digest=opts.requirements_digest or "",
        uvfetch_source=box.source("uvfetch"),
        spec_id=opts.spec_id(),
        python=opts.python,
        tf_cpu=f"tensorflow-cpu=={TF_VERSION}",
        tf_gpu=f"tensorflow[and-cuda]=={TF_VERSION}",
        tf_other=f"tensorflow=={TF_VERSION}",
        backend=opts.backend,
        jax_cpu=f"jax=={JAX_VERSION}",
        jax_gpu=f"jax[cuda12]=={JAX_VERSION}",
        requirements=opts.requirements,
        find_links=list(opts.find_links),
        no_index=opts.no_index,
        index_url=opts.index_url or "",
        index_shown=redact_url(opts.index_url) if opts.index_url else "",
        installer=opts.installer,
        retries="" if opts.retries is None else int(opts.retries),
        system_site_packages=opts.system_site_packages,
        cpu_free_mb=int(opts.cpu_free_mb),
        gpu_free_mb=int(opts.gpu_free_mb),
    )


def ready_command(workdir: str, opts: SetupOptions) -> str:
    """A shell command that exits 0 exactly when the environment is ready."""
    return f'test "$(head -n 1 {shlex.quote(BoxLayout(workdir, opts.env_name).ready_marker)} 2>/dev/null)" = {shlex.quote("spec " + opts.spec_id())}'


def is_ready(conn, workdir: str, opts: SetupOptions) -> bool:
    return conn.run(ready_command(workdir, opts), hide=True, warn=True, in_stream=False).exited == 0


def stream_lines(channel, on_line: Callable[[str], None]) -> int:
    """Feed each line of channel's stdout+stderr to on_line as it comes; the exit status."""
    channel.set_combine_stderr(True)
    buf = b""
    while True:
        data = channel.recv(65536)
        if not data:
            break
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            on_line(line.decode(errors="replace"))
    if buf:
        on_line(buf.decode(errors="replace"))
    return channel.recv_exit_status()


INSTALLER_LINE = "trainbox-setup:   "  # the bootstrap's `progress`: uv's or pip's own lines


class InstallProgress:
    """The installer's lines (uv's or pip's, one per package) as ONE bar, a
    one-line summary when it is done, and their tail once if it fails; the
    bootstrap's own lines pass through to say."""

    def __init__(self, say: Callable[[str], None]):
        from common import progress

        self.say = say
        self.bar: progress.Bar | None = None
        self.tail = progress.Tail()
        self.installed = 0

    def line(self, line: str) -> None:
        if not line.startswith(INSTALLER_LINE):
            self.say(line)
            return
        text = line[len(INSTALLER_LINE) :].strip()
        self.tail.add(text)
        if self.bar is None:
            from common import progress

            self.bar = progress.Bar("environment", None, unit="pkg", say=self.say)
        words = text.split()
        if not words:
            return
        if words[0] == "Resolved" and len(words) > 1 and words[1].isdigit():  # uv
            self.bar.set_total(int(words[1]))
            self.bar.set_phase("downloading")
        elif words[0] == "+" and len(words) > 1:  # uv: one per package installed
            self.installed += 1
            self.bar.set_phase("installing")
            self.bar.advance(1, words[1])
        elif words[0] == "Collecting" and len(words) > 1:  # pip: one per package resolved
            self.bar.set_phase("collecting")
            self.bar.advance(1, words[1])
        elif text.startswith("Installing collected packages"):
            self.bar.set_phase("installing")
        elif words[0] == "Successfully" and words[1:2] == ["installed"]:
            self.installed = max(self.installed, len(words) - 2)

    def done(self, ok: bool, log: str | None) -> None:
        """log: where all of the output is on the box (None: the error that follows says where it is)."""
        if self.bar is None:
            return
        self.bar.close()
        if ok:
            self.say(f"environment: {self.installed} packages in {self.bar.elapsed():.0f} s")
        elif self.tail.lines:
            where = f" (all of it: {log} on the box)" if log else ""
            self.say(f"the install failed; the last of its output{where}:\n{self.tail.text()}")


def run_bootstrap(conn, workdir: str, opts: SetupOptions, say: Callable[[str], None], force: bool = False) -> str:
    """Run the bootstrap on the box, streaming its progress to say; the env's python, or RemoteError.

    force: build a new env even if the current one is ready (it is replaced, not
    removed under a running job)."""
    from .connection import during, exec_channel, link_lost

    # One round trip: the script arrives on stdin, is stored (user-data runs the same file), then run.
    layout = BoxLayout(workdir, opts.env_name)
    p = shlex.quote(layout.bootstrap)
    channel = exec_channel(
        conn,
        f'umask 077 && mkdir -p "$(dirname {p})" && cat > {p}.tmp && mv {p}.tmp {p} && '
        f"{'TRAINBOX_FORCE=1 ' if force else ''}exec bash {p} </dev/null",
    )
    channel.sendall(render_bootstrap(workdir, opts).encode())
    channel.shutdown_write()
    errors: list[str] = []
    shown = InstallProgress(say)

    def on_line(line: str) -> None:
        line = clean(redact_all(line, opts.index_url, *opts.find_links))
        if line.startswith("trainbox-setup: error: "):
            errors.append(line[len("trainbox-setup: error: ") :])
        else:
            shown.line(line)

    status = None
    try:
        with during(
            conn,
            "the environment's setup",
            "run `remote setup` (or the same command) again: an unfinished build is never used, and is built anew",
        ):
            status = stream_lines(channel, on_line)
            if status == -1 and link_lost(conn):  # the channel ended with no exit status
                raise EOFError("the bootstrap's output ended with no exit status")
    finally:
        channel.close()
        shown.done(status == 0, None if status == REQUIREMENTS_FAILED else box_path(layout.setup_log))
    if status == 0:
        return layout.env_python
    if status == REQUIREMENTS_FAILED:
        # The tail was shown just above: the error names the file, not the installer's words again.
        reqs = opts.project_requirements or "the project's requirements"
        raise RequirementsFailed(
            f"the project's requirements ({reqs}) do not install on the box",
            layout.setup_log,
            f"full log: {box_path(layout.setup_log)} on the box; fix them, then run again",
            secrets=(opts.index_url, *opts.find_links),
        )
    if errors:
        raise RemoteError(errors[-1])
    what = EXIT_CODES.get(status, f"the bootstrap exited {status}")
    raise RemoteError(
        f"setting up the box's environment failed ({what})",
        f"see {box_path(layout.setup_log)} on the box, then rerun `remote setup`",
    )


def ensure(conn, workdir: str, opts: SetupOptions, say: Callable[[str], None]) -> str:
    """The env's python: at once if ready, else after running the bootstrap (which waits for a running one)."""
    if is_ready(conn, workdir, opts):
        return BoxLayout(workdir, opts.env_name).env_python
    say("the box's environment is not ready: setting it up (this waits for a setup already running)")
    return run_bootstrap(conn, workdir, opts, say)
