"""The data folder: one folder per class in each split, validated before any TensorFlow is imported.

The course's layout is ``DATA/{train,validation}/<class>/<image>``: each
split holds the same class folders (``cats``, ``dogs``), and the class index
of a folder is its position in sorted order (cats=0, dogs=1). ``scan_folders``
checks that shape and reads each image's header (format and size, not the
pixels), so a broken data set fails in a second with one clear line instead
of minutes later inside ``fit``. Unreadable files are counted and skipped,
or refused with ``strict=True``.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from PIL import Image

from model import SPLITS
from model.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# PIL format name -> how the input pipeline decodes it. MPO is the
# multi-picture JPEG some cameras write; libjpeg reads its first frame.
DECODABLE_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "other", "BMP": "other", "GIF": "other"}
# A complete JPEG ends with the EOI marker; allow for trailing padding.
_JPEG_TAIL_BYTES = 4096


@dataclass(frozen=True)
class ImageFile:
    """One readable image: where it is, its class index and its header size."""

    path: str
    label: int
    width: int
    height: int
    is_jpeg: bool


@dataclass
class ClassFolders:
    """A validated data folder: class names and the readable files per split."""

    root: str
    classes: list[str]
    train: list[ImageFile]
    validation: list[ImageFile]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    def split(self, name: str) -> list[ImageFile]:
        return {"train": self.train, "validation": self.validation}[name]

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {class: number of readable images}}."""
        out = {}
        for split in SPLITS:
            per_class = {c: 0 for c in self.classes}
            for f in self.split(split):
                per_class[self.classes[f.label]] += 1
            out[split] = per_class
        return out


def probe_image(path: str) -> tuple[str, int, int]:
    """Return (PIL format, width, height) from the header, or raise ValueError(why).

    Reads the header and, for JPEG, the last few KB to catch truncated
    files (no end-of-image marker); it does not decode the pixels.
    """
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise ValueError("empty file")
        with Image.open(path) as im:
            fmt, (width, height) = im.format, im.size
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 (PIL raises many types for garbage input)
        raise ValueError(f"not a readable image ({type(e).__name__})") from None
    if fmt not in DECODABLE_FORMATS:
        raise ValueError(f"unsupported format {fmt}")
    if width < 1 or height < 1:
        raise ValueError(f"bad size {width}x{height}")
    if DECODABLE_FORMATS[fmt] == "jpeg":
        with open(path, "rb") as f:
            f.seek(max(0, size - _JPEG_TAIL_BYTES))
            if b"\xff\xd9" not in f.read():
                raise ValueError("truncated JPEG (no end-of-image marker)")
    return fmt, width, height


def list_images(folder: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Sorted image paths in one folder, and (path, why) for other files.

    Hidden files (``.DS_Store``) and sub-folders are ignored silently.
    """
    images, others = [], []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if entry.name.lower().endswith(IMAGE_EXTENSIONS):
            images.append(entry.path)
        else:
            others.append((entry.path, "not an image file extension"))
    return images, others


def probe_many(paths: list[str], workers: int = 8) -> list[tuple[str, int, int] | str]:
    """probe_image over many paths with threads (header reads are I/O bound).

    Returns, in order, either (format, width, height) or the reason string.
    """

    def one(path):
        try:
            return probe_image(path)
        except ValueError as e:
            return str(e)

    if len(paths) < 64:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, paths))


def readable_images(folder: str, label: int) -> tuple[list[ImageFile], list[tuple[str, str]]]:
    """The folder's decodable images (ImageFile of class label), and (path, why) for every other file."""
    paths, bad = list_images(folder)
    good = []
    for path, probe in zip(paths, probe_many(paths)):
        if isinstance(probe, str):
            bad.append((path, probe))
        else:
            fmt, w, h = probe
            good.append(ImageFile(path, label, w, h, DECODABLE_FORMATS[fmt] == "jpeg"))
    return good, bad


def _subfolders(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def scan_folders(root: str, strict: bool = False) -> ClassFolders:
    """Validate ``root``'s layout and return its readable images.

    Raises DataError (exit 2) for: a missing folder or split, fewer than two
    classes, splits with different classes, a class with no readable image,
    and (with ``strict``) any unreadable or non-image file. Otherwise such
    files are skipped, logged as one warning, and listed in ``skipped``.
    """
    root = os.path.abspath(root)
    expected = f"expected {root}/{{train,validation}}/<class>/*.jpg"
    if not os.path.isdir(root):
        raise DataError(
            f"data folder {root} does not exist; {expected} "
            "(make one with: python -m model organize or python -m model synth)"
        )
    for split in SPLITS:
        if not os.path.isdir(os.path.join(root, split)):
            raise DataError(
                f"{root} has no {split}/ folder; {expected} "
                "(python -m model organize builds this layout from Kaggle's flat folder)"
            )

    classes = _subfolders(os.path.join(root, "train"))
    if len(classes) < 2:
        found = ", ".join(classes) or "none"
        raise DataError(
            f"{root}/train has {len(classes)} class folder(s) ({found}); "
            "need at least two, one folder per class (e.g. cats/ and dogs/)"
        )
    val_classes = _subfolders(os.path.join(root, "validation"))
    if val_classes != classes:
        raise DataError(
            f"class folders differ between splits: train has {classes}, "
            f"validation has {val_classes}; give both splits the same class folders"
        )

    splits: dict[str, list[ImageFile]] = {}
    skipped: list[tuple[str, str]] = []
    for split in SPLITS:
        splits[split] = []
        for label, name in enumerate(classes):
            folder = os.path.join(root, split, name)
            good, bad = readable_images(folder, label)
            if bad and strict:
                path, why = bad[0]
                raise DataError(
                    f"{path}: {why} ({len(bad)} unreadable file(s) in {folder}); "
                    "remove them, or drop --strict to skip them with a warning"
                )
            if not good:
                raise DataError(
                    f"{folder} holds no readable image ({', '.join(IMAGE_EXTENSIONS)}); "
                    "add images to it or remove the folder from both splits"
                )
            skipped.extend(bad)
            splits[split].extend(good)

    if skipped:
        log.warning(
            "skipped %d unreadable or non-image file(s), e.g. %s: %s",
            len(skipped),
            skipped[0][0],
            skipped[0][1],
        )
    return ClassFolders(root, classes, splits["train"], splits["validation"], skipped)
