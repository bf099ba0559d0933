"""A container box's layer frozen for the next box: the sandbox's image (sandbox/images.py).

The guest cleans itself first (remote/bake.py, as on AWS: runs, data, code,
logs, keys, history, cloud-init's state); then it powers off, and its own
shutdown writes again what no image keeps. The host removes that from the
layer (SCRUBBED), checks that nothing of the user's is left (``leftovers``),
and freezes the layer: renamed, never copied, into the image's folder, a
read-only lower layer of every box made from the image (sandbox/container.py
boots them: the root, the image's layers, the box's own on top).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from box import layout as names
from common.errors import TrainboxError

from .container import PORT_CFG, SEED, lowers, running, set_lowers, upper

# What the host removes from a layer it freezes, relative to the layer's root:
# this box's own (host keys, machine id, random seed: cloud-init and systemd
# make each new box its own) and what the shutdown wrote after the guest's
# clean-up (logs, the journal, temp files). A file the root has too shows the
# root's again.
SCRUBBED = (
    "etc/ssh/ssh_host_*",
    "etc/machine-id",
    "var/lib/systemd/random-seed",
    "var/lib/systemd/credential.secret",
    "var/log/**/*",
    "var/lib/cloud/*",
    "tmp/*",
    "var/tmp/*",
)
# Moved, not frozen: the box's NoCloud seed (its instance id, key, user-data) and
# port stay the box's, in its new layer.
OWN = (SEED, PORT_CFG)
# What the guest's clean-up promised is gone (remote/bake.py KEPT, HOME_REMOVED):
# checked on the frozen layer, from the host. Under the login's trainbox
# directory only KEPT_WORKDIR may stay.
KEPT_WORKDIR = (names.ENV_LINK, names.ENVS, names.TOOLS, names.BOOTSTRAP)
HOME_GONE = (".ssh/*", ".aws", ".bash_history", ".python_history", ".cache", ".keras", ".jupyter", ".kaggle", ".netrc")


def _whiteout(p: Path) -> bool:
    """overlayfs's mark of a file deleted above a lower layer (a 0/0 character device)."""
    st = p.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _entries(root: Path, pattern: str) -> list[Path]:
    found = sorted(root.glob(pattern), key=lambda p: -len(p.parts))  # deepest first
    return [p for p in found if not _whiteout(p)]


def scrub(layer: Path) -> list[str]:
    """Remove SCRUBBED from a powered-off box's layer (see above); what was removed, relative."""
    removed = []
    for pattern in SCRUBBED:
        for p in _entries(layer, pattern):
            if pattern.startswith("var/lib/cloud/") and p.relative_to(layer).as_posix() == "var/lib/cloud/seed":
                continue  # the box's own seed: moved to its new layer by freeze
            if p.is_dir() and not p.is_symlink():
                if pattern.startswith("var/log/"):
                    continue  # a log folder stays (its files go)
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
            else:
                continue
            removed.append(p.relative_to(layer).as_posix())
    return removed


def leftovers(layer: Path) -> list[str]:
    """What of the user's or of this box's own a layer still holds (relative paths); [] when it is clean."""
    left = []
    for home in [*layer.glob("home/*"), layer / "root"]:
        for pattern in HOME_GONE:
            left += [p.relative_to(layer).as_posix() for p in _entries(home, pattern)]
        work = home / names.DEFAULT_WORKDIR
        if work.is_dir():
            left += [p.relative_to(layer).as_posix() for p in _entries(work, "*") if p.name not in KEPT_WORKDIR]
    for pattern in ("etc/ssh/ssh_host_*", "var/log/**/*", "var/lib/cloud/instance*", "etc/machine-id"):
        left += [p.relative_to(layer).as_posix() for p in _entries(layer, pattern) if not p.is_dir()]
    return sorted(set(left))


def check_clean(d: Path) -> list[str]:
    """Scrub the powered-off box's layer and check nothing of the user's is left in it (an error if so);
    what the host removed."""
    if running(d):
        raise TrainboxError(
            f"the container box in {d} is running: its layer is frozen only when it is off",
            "stop it (`python -m provision stop`), then `image create` again",
        )
    removed = scrub(upper(d))
    left = leftovers(upper(d))
    if left:
        raise TrainboxError(
            f"the box's disk still holds {', '.join(left[:5])}{' ...' if len(left) > 5 else ''} after its clean-up",
            "nothing was imaged; remove them on the box, then `image create` again",
        )
    return removed


def freeze(d: Path, layer: Path) -> list[Path]:
    """Freeze the (checked, powered-off) box's layer into the read-only lower layer ``layer``.

    The layer is renamed, not copied. The box's disk stays what it was: its
    lowers, now with ``layer``, and a new writable layer of its own on top,
    holding its seed and port (OWN), so it boots again like a box made from the
    image. The image's layers, lowest first."""
    if running(d):
        raise TrainboxError(f"the container box in {d} is running", "stop it, then `image create` again")
    up, fresh = upper(d), d / "upper.new"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    fresh.chmod(0o755)
    for rel in OWN:
        if (up / rel).exists():
            (fresh / rel).parent.mkdir(parents=True, exist_ok=True)
            os.rename(up / rel, fresh / rel)
    layer.parent.mkdir(parents=True, exist_ok=True)
    os.rename(up, layer)
    os.rename(fresh, up)
    stack = [*lowers(d), layer]
    set_lowers(d, stack)
    return stack
