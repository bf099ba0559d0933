"""What ``--data SRC`` names: a local folder, an archive URL, an S3 prefix,
or a Kaggle competition or dataset.

``parse(text)`` is pure (no I/O beyond "is it a local folder?") and raises
UsageError (exit 64) for what trainbox cannot fetch: an unknown scheme, an
archive type it cannot extract, a malformed ``#sha256=`` or Kaggle name.
Each remote source has a cache key: the same URL and hash, the same bucket
and prefix, or the same Kaggle reference give the same key, so a re-run
finds the box's copy.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from common.errors import UsageError

ARCHIVES = {".tar.gz": "tar", ".tgz": "tar", ".tar": "tar", ".zip": "zip", ".tar.bz2": "tar", ".tar.xz": "tar"}
_SHA = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")

_KAGGLE_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
KAGGLE_FORMS = "kaggle:COMPETITION, kaggle:COMPETITION/FILE.zip, kaggle:OWNER/DATASET or kaggle:OWNER/DATASET/FILE.zip"


@dataclass(frozen=True)
class LocalSource:
    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class UrlSource:
    url: str  # without the #sha256= fragment
    sha256: str | None
    kind: str  # "tar" or "zip"
    name: str  # the archive's file name

    @property
    def key(self) -> str:
        stem = self.name
        for ext in ARCHIVES:
            if stem.lower().endswith(ext):
                stem = stem[: -len(ext)]
                break
        digest = hashlib.sha256(f"{self.url}#{self.sha256 or ''}".encode()).hexdigest()[:12]
        return f"{_slug(stem) or 'data'}-{digest}"

    def __str__(self) -> str:
        return self.url + (f"#sha256={self.sha256}" if self.sha256 else "")


@dataclass(frozen=True)
class S3Source:
    bucket: str
    prefix: str  # "" or ending in "/"

    @property
    def key(self) -> str:
        digest = hashlib.sha256(f"s3://{self.bucket}/{self.prefix}".encode()).hexdigest()[:12]
        tail = _slug(self.prefix.strip("/").replace("/", "-"))
        return f"s3-{_slug(self.bucket)}{'-' + tail if tail else ''}-{digest}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class KaggleSource:
    """A competition's files (``owner`` None) or a dataset's; ``file`` None: all of them, as one zip."""

    name: str  # the competition, or the dataset's slug
    owner: str | None = None
    file: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.name}" if self.owner else self.name

    @property
    def key(self) -> str:
        """From the reference alone: the signed URL Kaggle hands out changes every time."""
        digest = hashlib.sha256(str(self).encode()).hexdigest()[:12]
        stem = self.file or ""
        for ext in ARCHIVES:
            if stem.lower().endswith(ext):
                stem = stem[: -len(ext)]
                break
        tail = _slug(stem.replace("/", "-"))
        return f"kaggle-{_slug(self.ref.replace('/', '-'))}{'-' + tail if tail else ''}-{digest}"

    @property
    def archive_name(self) -> str:
        """The file the download is: FILE, else ``NAME.zip`` (Kaggle zips a whole competition or dataset)."""
        return self.file.rsplit("/", 1)[-1] if self.file else f"{self.name}.zip"

    def __str__(self) -> str:
        return f"kaggle:{self.ref}" + (f"/{self.file}" if self.file else "")


Source = LocalSource | UrlSource | S3Source | KaggleSource


def _slug(text: str) -> str:
    return _SAFE.sub("-", text).strip("-.")[:40]


def parse(text: str) -> Source:
    """The source SRC names, or UsageError (exit 64) saying what is accepted."""
    text = text.strip()
    if text.lower().startswith("kaggle:"):
        return _kaggle(text)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("http", "https"):
        return _url(text)
    if scheme == "s3":
        return _s3(text)
    if scheme or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\\/]", text) and not Path(text).exists():
        raise UsageError(
            f"--data {text}: unsupported source {text.split(':', 1)[0]!r}",
            "give a local folder, an http(s):// URL of a .zip/.tar/.tar.gz/.tgz, or s3://bucket/prefix",
        )
    path = Path(text).expanduser()
    if not path.is_dir():
        raise UsageError(
            f"--data {text}: no such directory",
            "give a local folder, an http(s):// URL of an archive, or s3://bucket/prefix",
        )
    return LocalSource(path)


_KAGGLE_FLAT = re.compile(r"^(cat|dog)\.\d+\.(jpe?g|png)$", re.IGNORECASE)


def check_image_folders(path: Path) -> None:
    """UsageError (exit 64) unless ``path`` has the course's shape: ``train/`` and
    ``validation/`` holding the same two or more class folders, each with a file.

    Only the shape, from directory listings (the box reads the images): a
    folder that is not a data set is refused here, before anything is sent,
    instead of after a full push. A Kaggle flat folder gets the organize command.
    """
    expected = "expected train/ and validation/, each with the same class folders (e.g. cats/ and dogs/)"

    def classes(split: Path) -> list[str]:
        return sorted(e.name for e in split.iterdir() if e.is_dir() and not e.name.startswith("."))

    def refuse(why: str) -> UsageError:
        flat = path if any(_KAGGLE_FLAT.match(e.name) for e in path.iterdir()) else path / "train"
        if flat.is_dir() and any(_KAGGLE_FLAT.match(e.name) for e in flat.iterdir()):
            return UsageError(
                f"--data {path} is Kaggle's flat layout (cat.N.jpg, dog.N.jpg), not class folders",
                f"make class folders with `python -m model organize --src {flat} --dst DIR`, then pass --data DIR",
            )
        return UsageError(
            f"--data {path} is not an image data set: {why}; {expected}",
            "python -m model organize builds this layout from Kaggle's flat folder",
        )

    for split in ("train", "validation"):
        if not (path / split).is_dir():
            raise refuse(f"it has no {split}/ folder")
    train = classes(path / "train")
    if len(train) < 2:
        raise refuse(f"train/ has {len(train)} class folder(s)")
    if classes(path / "validation") != train:
        raise refuse(
            f"train/ has {', '.join(train)} but validation/ has {', '.join(classes(path / 'validation')) or 'none'}"
        )
    for split in ("train", "validation"):
        for name in train:
            if not any(e.is_file() for e in (path / split / name).iterdir()):
                raise refuse(f"{split}/{name}/ holds no file")


def _url(text: str) -> UrlSource:
    base, _, fragment = text.partition("#")
    sha = None
    if fragment:
        m = _SHA.match(fragment)
        if not m:
            raise UsageError(f"--data {text}: the URL fragment must be #sha256=<64 hex digits>, got #{fragment}")
        sha = m.group(1).lower()
    parts = urlsplit(base)
    if not parts.hostname:
        raise UsageError(f"--data {text}: the URL has no host")
    name = unquote(parts.path.rsplit("/", 1)[-1])
    kind = archive_kind(name)
    if kind is None:
        raise UsageError(
            f"--data {text}: unsupported archive type {name or '(no file name)'!r}",
            "trainbox extracts .zip, .tar, .tar.gz and .tgz",
        )
    return UrlSource(base, sha, kind, name)


def _kaggle(text: str) -> KaggleSource:
    """``kaggle:COMP[/FILE]`` or ``kaggle:OWNER/DATASET[/FILE]``: a second part with a dot is a file
    (competition files are named like ``train.zip``; Kaggle's slugs have no dots)."""
    parts = text[len("kaggle:") :].strip("/").split("/")
    bad = UsageError(f"--data {text}: not a Kaggle competition or dataset", f"give {KAGGLE_FORMS}")
    if not parts[0] or not _KAGGLE_SLUG.match(parts[0]) or any(p in ("", ".", "..") for p in parts):
        raise bad
    if len(parts) == 1:
        source = KaggleSource(parts[0])
    elif "." in parts[1]:
        source = KaggleSource(parts[0], file="/".join(parts[1:]))
    else:
        if not _KAGGLE_SLUG.match(parts[1]):
            raise bad
        source = KaggleSource(parts[1], owner=parts[0], file="/".join(parts[2:]) or None)
    name = source.archive_name
    if archive_kind(name) is None:
        raise UsageError(
            f"--data {text}: {name} is not an archive trainbox can extract",
            f"name a .zip/.tar/.tar.gz/.tgz file of it, or the whole {'dataset' if source.owner else 'competition'} "
            f"(kaggle:{source.ref}); `kaggle {'datasets' if source.owner else 'competitions'} files {source.ref}` lists them",
        )
    return source


def archive_kind(name: str) -> str | None:
    """ "tar" or "zip" for a file name trainbox can extract, else None."""
    return next((k for ext, k in ARCHIVES.items() if name.lower().endswith(ext)), None)


def _s3(text: str) -> S3Source:
    rest = text.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", bucket):
        raise UsageError(f"--data {text}: {bucket!r} is not an S3 bucket name", "give s3://bucket/prefix")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return S3Source(bucket, prefix)
