"""``remote train``: the built-in case of ``remote run``.

The code is trainbox's model package (model/, pushed as it is installed here),
the command is ``python -m model train --data "$TRAINBOX_DATA" --out
"$TRAINBOX_OUT"`` plus the model's flags, the data defaults to a synthetic set
that ``python -m model synth`` makes on the box, and a local copy resumes on
another box when it holds the model's BackupAndRestore state (backup/). This is
the only module of the job machinery that knows the model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from common.errors import UsageError
from model import run_files  # the run folder's names: the one part of model/ the laptop reads

from .orchestrate import RunSpec

FLAGS = ("net", "mode", "batch_size", "image_size", "lr", "seed", "weights", "patience")
# The model's data and output folders come from the run's environment: the
# argv holds no path of the box, so the same command runs on any box.
TRAIN = 'exec python -m model train --data "$TRAINBOX_DATA" --out "$TRAINBOX_OUT" "$@"'


def model_package_dir() -> Path:
    """The local ``model`` package, found without importing it."""
    spec = importlib.util.find_spec("model")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the `model` package is not installed", "pip install trainbox")
    return Path(list(spec.submodule_search_locations)[0])


def train_args(args, extra: list[str]) -> list[str]:
    """The model's flags from `remote train`'s own, then whatever else was given
    (after `--`: the `--` itself is ours, not the model's)."""
    if extra[:1] == ["--"]:
        extra = extra[1:]
    out = ["--epochs", str(args.epochs)]
    for flag in FLAGS:
        value = getattr(args, flag)
        if value is not None:
            out += [f"--{flag.replace('_', '-')}", str(value)]
    return out + extra


def command(model_args: list[str]) -> tuple[str, ...]:
    return ("bash", "-c", TRAIN, "model-train", *model_args)


def spec(
    model_args: list[str], data: str | None, exclude: tuple[Path, ...] = (), backend: str = "tensorflow"
) -> RunSpec:
    return RunSpec(
        code=model_package_dir(),
        command=command(model_args),
        data=data,
        kind="train",
        package=True,
        synth=("-m", "model", "synth", "--out"),
        resume_state=run_files.BACKUP,
        exclude=exclude,
        backend=backend,
    )


def spec_of(rec, exclude: tuple[Path, ...] = ()) -> RunSpec | None:
    """How a recorded run was started (a `remote train` one, or one recorded
    before `remote run` existed, with the model's arguments), or None when the
    record does not say."""
    from dataclasses import replace

    from .orchestrate import spec_from_record

    if rec.kind != "train":
        return spec_from_record(rec, exclude)
    if rec.command is None and rec.train_args is None:
        return None
    s = spec(rec.train_args or [], rec.data, exclude, rec.backend)
    return s if rec.command is None else replace(s, command=tuple(rec.command))


def summary(local_dir: Path) -> str:
    """One line on the training, from the model's history.json ("" without one)."""
    import json

    hist = local_dir / run_files.HISTORY_JSON
    if not hist.exists():
        return ""
    h = json.loads(hist.read_text())
    parts = [f"{len(h.get('loss', []))} epochs"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if h.get(key):
            parts.append(f"{key} {h[key][-1]:.4f}")
    model = local_dir / run_files.MODEL
    return "trained " + ", ".join(parts) + (f"; model: {model}" if model.exists() else "")
