"""Kaggle's flat layout -> the course's class folders.

Kaggle's train.zip is one folder of ``cat.123.jpg`` and ``dog.45.jpg``. The
course moved them by hand into ``{train,validation}/{cats,dogs}``; this does
it deterministically: files are ordered by number, shuffled with the seed,
optionally sampled (``--sample``, the course's small quick-check set) and
split by ``val_ratio``. The same arguments always give the same folders.
"""

from __future__ import annotations

import os
import random
import re
import shutil

from model import SPLITS
from model.errors import UsageError

KAGGLE_NAME = re.compile(r"^(cat|dog)\.(\d+)\.(jpe?g|png)$", re.IGNORECASE)
CLASS_FOLDERS = {"cat": "cats", "dog": "dogs"}


def plan(
    names: list[str], val_ratio: float = 0.2, sample: int | None = None, seed: int = 0
) -> dict[str, dict[str, list[str]]]:
    """Decide where each Kaggle file name goes: {split: {class folder: [names]}}.

    Pure function (no I/O), so the split is easy to test. Names that are not
    ``cat.N.ext`` / ``dog.N.ext`` are left out. ``sample`` caps the number of
    images per class before the split.
    """
    by_class: dict[str, list[tuple[int, str]]] = {"cat": [], "dog": []}
    for name in names:
        m = KAGGLE_NAME.match(name)
        if m:
            by_class[m.group(1).lower()].append((int(m.group(2)), name))
    out: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
    for animal, items in by_class.items():
        ordered = [name for _, name in sorted(items)]
        # One RNG per class, so adding dogs never reshuffles the cats.
        random.Random(f"{seed}:{animal}").shuffle(ordered)
        if sample is not None:
            ordered = ordered[:sample]
        n_val = int(len(ordered) * val_ratio + 0.5)  # round half up
        folder = CLASS_FOLDERS[animal]
        out["validation"][folder] = sorted(ordered[:n_val])
        out["train"][folder] = sorted(ordered[n_val:])
    return out


def organize(
    src: str, dst: str, val_ratio: float = 0.2, sample: int | None = None, seed: int = 0
) -> dict[str, dict[str, int]]:
    """Copy Kaggle's flat ``src`` into ``dst/{train,validation}/{cats,dogs}``.

    Returns {split: {class folder: count}}. Raises UsageError (exit 2) for a
    missing ``src``, no Kaggle-named files, a bad ratio or sample, or a
    ``dst`` that already holds a split (never mixes two organizations).
    """
    if not 0.0 < val_ratio < 1.0:
        raise UsageError(f"--val-ratio {val_ratio} is out of range; give a fraction between 0 and 1, e.g. 0.2")
    if sample is not None and sample < 2:
        raise UsageError(f"--sample {sample} is too small; give at least 2 images per class")
    if not os.path.isdir(src):
        raise UsageError(f"--src {src} is not a folder; point it at Kaggle's unzipped train/ folder")
    names = sorted(e.name for e in os.scandir(src) if e.is_file())
    layout = plan(names, val_ratio, sample, seed)
    for animal, folder in CLASS_FOLDERS.items():
        if not layout["train"][folder] and not layout["validation"][folder]:
            raise UsageError(
                f"{src} has no {animal}.<number>.jpg files; expected Kaggle's flat layout (cat.0.jpg, dog.0.jpg, ...)"
            )
    for split in SPLITS:
        target = os.path.join(dst, split)
        if os.path.isdir(target) and os.listdir(target):
            raise UsageError(f"{target} already exists and is not empty; choose a new --dst or remove it")
    counts: dict[str, dict[str, int]] = {}
    for split, per_class in layout.items():
        counts[split] = {}
        for folder, files in per_class.items():
            target = os.path.join(dst, split, folder)
            os.makedirs(target, exist_ok=True)
            for name in files:
                shutil.copyfile(os.path.join(src, name), os.path.join(target, name))
            counts[split][folder] = len(files)
    return counts
