"""``remote doctor``: is the box's environment ready, and does it match the laptop's pins?

One SSH command gathers everything (the marker, a running setup, disk,
nvidia-smi, and the interpreter's versions and the GPUs TensorFlow sees:
box/probe.py);
``diagnose`` parses it into a Report, ``format_report`` prints it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

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

    @property
    def problems(self) -> list[str]:
        out = [] if self.ready else [f"environment not ready ({self.why_not})"]
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


def probe_command(workdir: str, python: str, opts: setup.SetupOptions) -> str:
    layout = BoxLayout(workdir, opts.env_name)
    w = shlex.quote(workdir)
    m = shlex.quote(layout.ready_marker)
    lock = shlex.quote(layout.setup_lock)
    py = shlex.quote(python)
    return "; ".join(
        [
            "cd ~",
            f'echo "marker=$(head -n 1 {m} 2>/dev/null)"',
            # An unfinished build of this spec (another backend's or project's environments are theirs).
            f"{{ test -e {shlex.quote(layout.env_link)} || ls -A {shlex.quote(layout.envs)} 2>/dev/null | grep -q {shlex.quote('^' + opts.spec_id() + '[.]')}; }} && echo env_exists=1",
            f"test -e {lock} && ! flock -n {lock} true && echo setup_running=1",
            f"(df -Pk {w} 2>/dev/null || df -Pk .) | awk 'NR==2 {{print \"disk_free_kb=\" $4}}'",
            "if command -v nvidia-smi >/dev/null 2>&1; then "
            "echo nvidia_gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU '); "
            "echo driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1); "
            "echo cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\\([0-9.]*\\).*/\\1/p' | head -n 1); fi",
            f"if command -v {py} >/dev/null 2>&1; then {py} -c {shlex.quote(box.source('probe'))} --gpus{' --jax' if opts.backend == 'jax' else ''} 2>/dev/null; fi",
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


def diagnose(conn, workdir: str, opts: setup.SetupOptions, python: str | None = None) -> Report:
    """What the box's environment looks like; python overrides trainbox's env (``--python``)."""
    from .connection import run

    managed = python is None
    layout = BoxLayout(workdir, opts.env_name)
    path = python or layout.env_python
    facts = _parse(run(conn, probe_command(workdir, path, opts), "probing the box"))
    probe = json.loads(facts["probe"]) if facts.get("probe") else {}
    rep = Report(python_path=path, managed=managed, ready=False, backend=opts.backend)
    if managed:
        want = f"spec {opts.spec_id()}"
        if facts.get("marker") == want:
            rep.ready = True
        elif facts.get("setup_running"):
            rep.why_not = f"a setup is running now; its log: ~/{layout.setup_log}"
        elif facts.get("marker"):
            rep.why_not = "built for other pins or options; `remote setup` rebuilds it"
        elif facts.get("env_exists"):
            rep.why_not = "an install was interrupted; `remote setup` repairs it"
        else:
            rep.why_not = f"no environment at ~/{layout.env_link}; run `remote setup`"
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
    rows = [
        ("box", label),
        ("environment", env),
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
