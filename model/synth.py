"""A generated two-class image set in the course's layout, for demos and tests.

There is no internet here to fetch Kaggle's data, so ``synth`` draws its own
"cats" and "dogs": cats are warm-coloured round blobs, dogs are cool-coloured
stripes, both on a noisy background of random tint. The classes differ in
both colour and shape, so the course's small CNN separates them in a couple
of epochs, while noise, random positions, sizes and flips keep every image
different.
"""

from __future__ import annotations

import os
import random

import numpy as np
from PIL import Image, ImageDraw

from model.errors import UsageError

CLASSES = ("cats", "dogs")


def _background(rng: random.Random, nprng: np.random.Generator, w: int, h: int) -> Image.Image:
    base = np.array([rng.randint(70, 170) for _ in range(3)], dtype=np.float32)
    noise = nprng.normal(0.0, 18.0, size=(h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def draw_cat(rng: random.Random, nprng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Warm (red/orange/yellow) filled ellipses."""
    im = _background(rng, nprng, w, h)
    d = ImageDraw.Draw(im)
    for _ in range(rng.randint(2, 4)):
        r = rng.uniform(0.12, 0.28) * min(w, h)
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        colour = (rng.randint(200, 255), rng.randint(40, 160), rng.randint(0, 60))
        d.ellipse([cx - r, cy - r * rng.uniform(0.7, 1.0), cx + r, cy + r], fill=colour)
    return im


def draw_dog(rng: random.Random, nprng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Cool (blue/cyan/green) parallel stripes."""
    im = _background(rng, nprng, w, h)
    d = ImageDraw.Draw(im)
    step = rng.uniform(0.15, 0.25) * h
    thick = step * rng.uniform(0.35, 0.55)
    y = rng.uniform(0, step)
    colour = (rng.randint(0, 60), rng.randint(60, 200), rng.randint(200, 255))
    while y < h:
        d.rectangle([0, y, w, y + thick], fill=colour)
        y += step
    return im.rotate(rng.uniform(-30, 30), resample=Image.BILINEAR, fillcolor=colour)


def generate(
    out: str,
    n: int = 200,
    image_size: int = 64,
    seed: int = 0,
    val_ratio: float = 0.2,
    max_size: int | None = None,
    quality: int = 90,
) -> dict[str, dict[str, int]]:
    """Write ``n`` images per class into ``out/{train,validation}/{cats,dogs}``.

    Images are ``image_size`` pixels square, or, when ``max_size`` is given,
    of random width and height between ``image_size`` and ``max_size`` (like
    the real set's varied photos; the benchmark uses this). The same seed
    gives the same files. Returns {split: {class: count}}.
    """
    if n < 2:
        raise UsageError(f"--n {n} is too small: need at least 2 images per class (one per split)")
    if image_size < 8:
        raise UsageError(f"--image-size {image_size} is too small; use 8 or more (default 64)")
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    n_val = max(1, int(n * val_ratio + 0.5))
    counts: dict[str, dict[str, int]] = {"train": {}, "validation": {}}
    for name, draw in zip(CLASSES, (draw_cat, draw_dog)):
        for i in range(n):
            split = "validation" if i < n_val else "train"
            folder = os.path.join(out, split, name)
            os.makedirs(folder, exist_ok=True)
            w = h = image_size
            if max_size:
                w, h = rng.randint(image_size, max_size), rng.randint(image_size, max_size)
            im = draw(rng, nprng, w, h)
            if rng.random() < 0.5:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            im.save(os.path.join(folder, f"{name[:-1]}.{i}.jpg"), quality=quality)
            counts[split][name] = counts[split].get(name, 0) + 1
    return counts
