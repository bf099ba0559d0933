"""What a trainbox image is in the sandbox (provision/images.py is the AWS side).

moto keeps the AMI (its tags are the
truth, as on AWS); the disk's contents live here, under
TRAINBOX_HOME/sandbox/images/<ami>. The functions below are the seam each
sandbox box kind implements:

  check_sandbox_disk(box, say)        the stopped box's disk holds nothing of the user's (before the AMI)
  freeze_sandbox_disk(box, image_id, say)  the box's cleaned disk becomes the image's
  thaw_sandbox_disk(image_id, box)    a new process box's disk starts from it; True if it did
  sandbox_layers(image_id)            a new container box's lower layers
  drop_sandbox_image(image_id)        `image rm`

The process box: the disk is a directory; freezing copies what the clean-up
kept (hard links: a venv of GBs costs no space) into disk/, thawing copies
it into the new box's disk and rewrites the absolute paths a venv holds (its
scripts' #! lines) from the old disk's path to the new one.

The container box (sandbox/container.py, sandbox/layers.py): its powered-off layer, scrubbed
and checked from the host, is renamed into layer/, a read-only lower layer;
layers.json names the root file system it sits on and the image's whole
stack of layers (an image of a box made from an image stacks on that one's).
A box booted from it keeps it as a lower layer: `image rm` deregisters the
AMI at once but removes the layer only once no box or image stands on it
(the way an EBS volume outlives the AMI it came from).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from common import paths

LAYER = "layer"
LAYERS = "layers.json"
REMOVED = "removed"


def sandbox_image_dir(image_id: str) -> Path:
    return paths.sandbox_dir() / "images" / image_id


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _is_container(box: str) -> bool:
    from . import boxes

    return boxes.kind_of(box) == "container"


def check_sandbox_disk(box: str, say: Callable[[str], None]) -> None:
    """Before the AMI: a stopped container box's layer, scrubbed and checked from the host (an error if unclean)."""
    if not _is_container(box):
        return  # the process box's disk is cleaned over SSH alone (its home is this machine's user's)
    from . import boxes, layers

    removed = layers.check_clean(boxes.box_dir(box))
    say(
        f"checked the powered-off box's layer from the host: nothing of the user's in it "
        f"({len(removed)} files its shutdown wrote removed: logs, host keys, machine id)"
    )


def freeze_sandbox_disk(box: str, image_id: str, say: Callable[[str], None] = lambda s: None) -> None:
    from . import boxes

    d = sandbox_image_dir(image_id)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    if _is_container(box):
        from . import layers, rootfs

        stack = layers.freeze(boxes.box_dir(box), d / LAYER)
        (d / LAYERS).write_text(json.dumps({"root": rootfs.key(), "layers": [str(p) for p in stack]}) + "\n")
        say(
            f"froze the box's layer as image {image_id}'s read-only lower layer (renamed, nothing copied: {d / LAYER}); "
            "the stopped box stands on it too, under a new layer of its own"
        )
        return
    disk = boxes.box_workdir(box)
    shutil.copytree(disk, d / "disk", symlinks=True, copy_function=_link_or_copy)
    (d / "origin").write_text(str(disk))


def thaw_sandbox_disk(image_id: str, box: str) -> bool:
    from . import boxes

    d = sandbox_image_dir(image_id)
    if not (d / "disk").is_dir():
        return False
    disk = boxes.box_workdir(box)
    shutil.copytree(d / "disk", disk, symlinks=True, copy_function=_link_or_copy, dirs_exist_ok=True)
    old, new = (d / "origin").read_text().encode(), str(disk).encode()
    if old != new:
        for f in disk.glob("envs/*/bin/*"):
            if f.is_symlink() or not f.is_file() or f.stat().st_size > 1 << 20:
                continue
            data = f.read_bytes()
            if old in data and b"\0" not in data:
                tmp = f.with_name(f.name + ".trainbox-tmp")
                tmp.write_bytes(data.replace(old, new))  # a new file: the image's hard link is left as it was
                shutil.copymode(f, tmp)
                os.replace(tmp, f)
    return True


def sandbox_layers(image_id: str) -> tuple[list[Path] | None, str]:
    """A new container box's lower layers from the image (lowest first), or None; and what it means, in words."""
    from . import rootfs

    d = sandbox_image_dir(image_id)
    if not (d / LAYERS).exists():
        what = (
            "was made from a process box (its disk is a folder, not a layer)"
            if (d / "disk").is_dir()
            else "has no layer on this machine"
        )
        return None, f"image {image_id} {what}: the container box boots bare and the bootstrap installs the environment"
    rec = json.loads((d / LAYERS).read_text())
    if rec["root"] != rootfs.key():
        return None, (
            f"image {image_id}'s layer sits on another root file system ({rec['root']}; this machine's is "
            f"{rootfs.key()}): the container box boots bare and the bootstrap installs the environment"
        )
    stack = [Path(p) for p in rec["layers"]]
    missing = [str(p) for p in stack if not p.is_dir()]
    if missing:
        return None, f"image {image_id}'s layer {missing[0]} is gone: the container box boots bare"
    n = f"{len(stack)} layers" if len(stack) > 1 else "layer"
    return stack, (
        f"the box boots the root, image {image_id}'s {n} (read-only) and its own new layer on top: "
        "its environment is ready"
    )


def drop_sandbox_image(image_id: str) -> list[str]:
    """`image rm`'s part here; the boxes and images whose disks still stand on the image's layer (it stays for them)."""
    d = sandbox_image_dir(image_id)
    if not (d / LAYER).is_dir():
        shutil.rmtree(d, ignore_errors=True)
        return []
    (d / REMOVED).write_text("")
    return gc_sandbox_layers().get(image_id, [])


def gc_sandbox_layers() -> dict[str, list[str]]:
    """Remove each removed image's layer that no box or live image stands on; the kept ones, with who uses them."""
    from . import boxes, container

    root = paths.sandbox_dir() / "images"
    if not root.is_dir():
        return {}
    users: dict[str, list[str]] = {}
    for box in boxes.sandbox_boxes():
        for p in {p for k in boxes.nodes_of(box) for p in container.lowers(boxes.box_dir(box, k))}:
            users.setdefault(str(p), []).append(f"box '{box}'")
    frozen = [d for d in root.iterdir() if (d / LAYERS).exists()]
    for d in frozen:
        if not (d / REMOVED).exists():
            for p in json.loads((d / LAYERS).read_text())["layers"][:-1]:
                users.setdefault(p, []).append(f"image {d.name}")
    kept = {}
    for d in frozen:
        if (d / REMOVED).exists():
            if users.get(str(d / LAYER)):
                kept[d.name] = users[str(d / LAYER)]
            else:
                shutil.rmtree(d, ignore_errors=True)
    return kept


# ---------------------------------------------------------------- `up`'s choice
