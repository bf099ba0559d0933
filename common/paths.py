"""Where trainbox keeps its files on the laptop.

Everything lives under ``TRAINBOX_HOME`` (default: the platform's user state
directory): the state cache, private keys, pinned host keys, the generated
ssh config and the sandbox's servers. Tests always point it at a temp dir.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path


def home() -> Path:
    env = os.environ.get("TRAINBOX_HOME")
    if env:
        root = Path(env).expanduser()
    else:
        import platformdirs

        root = Path(platformdirs.user_state_dir("trainbox"))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from .errors import UsageError

        raise UsageError(
            f"TRAINBOX_HOME {root} cannot be trainbox's folder ({e.strerror})",
            "point TRAINBOX_HOME at a folder of yours, or unset it",
        ) from None
    return root


def cache_dir(*parts: str) -> Path:
    """The machine-wide cache (the container box's root file system, Kaggle's
    downloads): ``TRAINBOX_CACHE``, else the platform's user cache dir. Never
    under TRAINBOX_HOME: the cache outlives a home (tests make one per test),
    and what it holds is rebuilt or fetched again if lost."""
    env = os.environ.get("TRAINBOX_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("trainbox"))
    d = root.joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d


def private_dir(*parts: str) -> Path:
    """A directory under home() that only the user can enter (0700)."""
    d = home().joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    return d


def state_dir() -> Path:
    return private_dir("state")


def keys_dir() -> Path:
    return private_dir("keys")


def key_path(name: str) -> Path:
    from .checks import box_name

    return keys_dir() / f"trainbox-{box_name(name)}.pem"


def known_hosts() -> Path:
    path = home() / "known_hosts"
    path.touch(exist_ok=True)
    return path


def sandbox_dir() -> Path:
    return private_dir("sandbox")


def write_private(path: Path, data: str) -> None:
    """Write a secret file created 0600 from the start (never world-readable)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_atomic(path: Path, data: str) -> None:
    """path holds data whole or not at all (a temp file of this process and thread, renamed in)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.write_text(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock for a read-modify-write of path, between threads and
    processes alike (each holder opens the lock file itself: flock is per open)."""
    with open(path.with_name(path.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
