"""``remote doctor``: is the box's environment ready, and does it match the laptop's pins?

One SSH command gathers everything (the marker, a running setup, disk,
nvidia-smi, and the interpreter's versions and the GPUs TensorFlow sees:
box/probe.py);
``diagnose`` parses it into a Report, ``format_report`` prints it.

A project with requirements (``remote doctor --code DIR``, or run from the
project's folder, as ``remote run`` decides it) runs in an environment of its
own (``env-KEY``): that one is checked instead of trainbox's, against the
digest of the laptop's requirements file (a changed file: stale), and each
requirement must be installed in it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import box
from box.layout import BoxLayout

from . import setup


@dataclass
class Report:
    python_path: str
    managed: bool  # trainbox's env (not a --python override)
    ready: bool
    why_not: str = ""
    python: str | None = None
    tensorflow: str | None = None
    keras: str | None = None
    gpus: list[str] | None = None
    tf_error: str | None = None
    backend: str = "tensorflow"  # Keras's, which the environment is for (remote setup --backend)
    jax: str | None = None
    jax_error: str | None = None
    nvidia_gpus: int = 0
    driver: str | None = None
    cuda: str | None = None
    disk_free_mb: int | None = None
    mismatches: list[str] = field(default_factory=list)
    # A project's environment: the project and its requirements file, and the requirements not installed in it.
    project: str | None = None
    requirements: list[str] | None = None
    missing: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = [] if self.ready else [f"environment not ready ({self.why_not})"]
        if self.missing:
            out.append(f"{', '.join(self.missing)} {'is' if len(self.missing) == 1 else 'are'} not installed in it")
        out += self.mismatches
        if self.tf_error:
            out.append(f"TensorFlow does not import ({self.tf_error})")
        if self.jax_error:
            out.append(f"JAX does not start ({self.jax_error})")
        if self.backend == "jax" and self.ready and not self.jax:
            out.append("JAX is not installed (the jax backend needs it)")
        if self.nvidia_gpus and self.gpus is not None and not self.gpus:
            out.append(f"the box has {self.nvidia_gpus} GPU(s) but {self.backend_label} sees none")
        return out

    @property
    def backend_label(self) -> str:
        return "JAX" if self.backend == "jax" else "TensorFlow"


def requirement_names(path) -> list[str]:
    """The distribution names a requirements file asks for (and the files its -r lines name);
    options, editables and bare URLs aside."""
    import re
    from pathlib import Path

    names, seen, todo = [], set(), [Path(path)]
    while todo:
        f = todo.pop(0).resolve()
        if f in seen or not f.is_file():
            continue
        seen.add(f)
        for line in f.read_text(errors="replace").splitlines():
            line = line.split(" #", 1)[0].strip()
            parts = line.split()
            if len(parts) > 1 and parts[0] in ("-r", "--requirement"):
                todo.append(f.parent / parts[1])
            m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
            if m and not line.startswith("-") and "://" not in line.split("@")[0]:
                names.append(m.group(0))
    return list(dict.fromkeys(names))


def probe_command(workdir: str, python: str, opts: setup.SetupOptions, dists: list[str] | None = None) -> str:
    layout = BoxLayout(workdir, opts.env_name)
    w = shlex.quote(workdir)
    m = shlex.quote(layout.ready_marker)
    lock = shlex.quote(layout.setup_lock)
    py = shlex.quote(python)
    return "; ".join(
        [
            "cd ~",
            f'echo "marker=$(head -n 1 {m} 2>/dev/null)"',
            f"echo \"reqs=$(sed -n 's/^requirements //p' {m} 2>/dev/null)\"",
            # An unfinished build of this spec (another backend's or project's environments are theirs).
            f"{{ test -e {shlex.quote(layout.env_link)} || ls -A {shlex.quote(layout.envs)} 2>/dev/null | grep -q {shlex.quote('^' + opts.spec_id() + '[.]')}; }} && echo env_exists=1",
            f"test -e {lock} && ! flock -n {lock} true && echo setup_running=1",
            f"(df -Pk {w} 2>/dev/null || df -Pk .) | awk 'NR==2 {{print \"disk_free_kb=\" $4}}'",
            "if command -v nvidia-smi >/dev/null 2>&1; then "
            "echo nvidia_gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU '); "
            "echo driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1); "
            "echo cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\\([0-9.]*\\).*/\\1/p' | head -n 1); fi",
            f"if command -v {py} >/dev/null 2>&1; then {py} -c {shlex.quote(box.source('probe'))}"
            f" --gpus{' --jax' if opts.backend == 'jax' else ''}"
            f"{' --dists ' + shlex.quote(','.join(dists)) if dists else ''} 2>/dev/null; fi",
            "true",
        ]
    )


def _parse(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            out[key] = value.strip()
    return out


def diagnose(
    conn,
    workdir: str,
    opts: setup.SetupOptions,
    python: str | None = None,
    project: tuple[str, str] | None = None,
) -> Report:
    """What the box's environment looks like; python overrides trainbox's env (``--python``).

    project: (the project's folder, its requirements file) on the laptop: ``opts``
    are its environment's (env_name, requirements_digest), checked with its requirements."""
    from .connection import run

    managed = python is None
    layout = BoxLayout(workdir, opts.env_name)
    path = python or layout.env_python
    names = requirement_names(project[1]) if project and managed else None
    facts = _parse(run(conn, probe_command(workdir, path, opts, names), "probing the box"))
    probe = json.loads(facts["probe"]) if facts.get("probe") else {}
    rep = Report(python_path=path, managed=managed, ready=False, backend=opts.backend)
    if names is not None and project is not None:
        rep.project, rep.requirements = f"{project[0]} (requirements: {project[1]})", names
    builds = "the project's next `remote run` rebuilds it" if rep.project else "`remote setup` rebuilds it"
    if managed:
        want = f"spec {opts.spec_id()}"
        if facts.get("marker") == want:
            rep.ready = True
            rep.missing = list(probe.get("missing") or [])
        elif facts.get("setup_running"):
            rep.why_not = f"a setup is running now; its log: {setup.box_path(layout.setup_log)}"
        elif facts.get("marker") and rep.project and facts.get("reqs") not in ("", None, opts.requirements_digest):
            rep.why_not = f"{Path(project[1]).name if project else 'requirements'} changed since its environment was built; {builds}"
        elif facts.get("marker"):
            rep.why_not = f"built for other pins or options; {builds}"
        elif facts.get("env_exists"):
            rep.why_not = f"an install was interrupted; {builds.replace('rebuilds', 'repairs')}"
        elif rep.project:
            rep.why_not = f"not built yet (its own environment, {setup.box_path(layout.env_link)}); {builds.replace('next', 'first').replace('rebuilds', 'builds')}"
        else:
            rep.why_not = f"no environment at {setup.box_path(layout.env_link)}; run `remote setup`"
    else:
        rep.ready = bool(probe.get("tensorflow") and probe.get("keras") and (probe.get("jax") or opts.backend != "jax"))
        lacks = "TensorFlow, Keras or JAX" if opts.backend == "jax" else "TensorFlow or Keras"
        rep.why_not = "" if rep.ready else f"{path} lacks {lacks}" if probe else f"no {path} on the box"
    rep.python, rep.tensorflow, rep.keras = probe.get("python"), probe.get("tensorflow"), probe.get("keras")
    rep.gpus, rep.tf_error = probe.get("gpus"), probe.get("tf_error")
    rep.jax, rep.jax_error = probe.get("jax"), probe.get("jax_error")
    rep.nvidia_gpus = int(facts.get("nvidia_gpus") or 0)
    rep.driver, rep.cuda = facts.get("driver") or None, facts.get("cuda") or None
    if facts.get("disk_free_kb", "").isdigit():
        rep.disk_free_mb = int(facts["disk_free_kb"]) // 1024
    pins = [("tensorflow", rep.tensorflow, setup.TF_VERSION), ("keras", rep.keras, setup.KERAS_VERSION)]
    if opts.backend == "jax":
        pins.append(("jax", rep.jax, setup.JAX_VERSION))
    for name, got, want in pins:
        if got and got != want:
            rep.mismatches.append(f"{name} {got} on the box, {want} on the laptop (.keras files may not load)")
    return rep


def format_report(label: str, rep: Report) -> str:
    def version(got, want):
        if not got:
            return "not installed"
        return f"{got} (laptop pins {want}: {'match' if got == want else 'MISMATCH'})"

    if rep.gpus is None:
        gpus = (
            f"unknown ({rep.backend_label} not importable)"
            if (rep.jax if rep.backend == "jax" else rep.tensorflow)
            else "-"
        )
    else:
        gpus = ", ".join(rep.gpus) or "none"
    nvidia = (
        f"{rep.nvidia_gpus} GPU(s), driver {rep.driver or '?'}, CUDA {rep.cuda or '?'}"
        if rep.nvidia_gpus
        else "no NVIDIA GPU (nvidia-smi lists none)"
    )
    disk = f"{rep.disk_free_mb / 1024:.1f} GB" if rep.disk_free_mb is not None else "unknown"
    env = ("ready" if rep.ready else f"NOT READY: {rep.why_not}") + ("" if rep.managed else " (--python given)")
    if rep.requirements is not None:
        installed = [n for n in rep.requirements if n not in rep.missing]
        reqs = (
            f"MISSING: {', '.join(rep.missing)}"
            if rep.missing
            else (f"{', '.join(installed)} installed" if installed else "none named")
        )
    rows = [
        ("box", label),
        *([("project", rep.project)] if rep.project else []),
        ("environment", env),
        *([("requirements", reqs if rep.ready else "-")] if rep.requirements is not None else []),
        ("backend", f"{rep.backend} (KERAS_BACKEND; `--backend` picks the environment)"),
        ("python", f"{rep.python or '-'} ({rep.python_path})"),
        ("tensorflow", version(rep.tensorflow, setup.TF_VERSION)),
        ("keras", version(rep.keras, setup.KERAS_VERSION)),
        *([("jax", version(rep.jax, setup.JAX_VERSION))] if rep.backend == "jax" else []),
        ("GPUs (JAX)" if rep.backend == "jax" else "GPUs TF sees", gpus),
        ("nvidia", nvidia),
        ("disk free", disk),
    ]
    return "\n".join(f"{k + ':':<14}{v}" for k, v in rows)
