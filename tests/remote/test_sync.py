"""sync.push against the real sshd on 127.0.0.1.

The box's working directory is a temp dir on this machine, so each test can
look at what landed on the "box" directly, and count what was sent through
the progress callback (the bytes written into the one tar stream).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from remote_helpers import processes_mentioning

from remote import sync


def make_tree(root: Path, n: int = 30, size: int = 2000) -> dict[str, bytes]:
    files = {}
    for i in range(n):
        rel = f"train/{'cats' if i % 2 else 'dogs'}/img{i:03d}.jpg"
        files[rel] = os.urandom(size + i)
    files["validation/cats/v1.jpg"] = os.urandom(1234)
    files["odd name with spaces/ü.jpg"] = b"x" * 10
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def tree(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root, our bookkeeping excluded."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and p.name not in sync.OURS
    }


class Counter:
    """A progress factory that records the file bytes pushed into the tar stream."""

    def __init__(self):
        self.total = None
        self.sent = 0
        self.calls = 0

    def __call__(self, total):
        self.calls += 1
        self.total = total
        return self

    def update(self, n):
        self.sent += n

    def close(self):
        pass


@pytest.fixture(autouse=True, params=["openssh", "paramiko"])
def transport(request, monkeypatch):
    """Every push test runs over both transports: the OpenSSH client (big
    pushes; forced here for small ones too) and paramiko's channel."""
    used = []
    real = sync._send_openssh
    monkeypatch.setattr(sync, "_send_openssh", lambda *a: used.append(a) or real(*a))
    if request.param == "openssh":
        monkeypatch.setattr(sync, "OPENSSH_FROM", 0)
    else:
        monkeypatch.setenv("TRAINBOX_SSH_CLIENT", "paramiko")
    return request.param, used


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    make_tree(d)
    return d


@pytest.fixture
def dest(box):
    return f"{box.workdir}/data/set"


def push(conn, src, dest):
    bar = Counter()
    plan = sync.push(conn, src, dest, bar)
    return plan, bar


def test_first_push_copies_everything_and_marks_complete(conn, src, dest, transport):
    plan, bar = push(conn, src, dest)
    name, used = transport
    assert bool(used) == (name == "openssh"), "the stream went through the transport under test"
    assert tree(Path(dest)) == tree(src)
    assert (Path(dest) / sync.MARKER).exists()
    assert len(plan.send) == plan.files == 32
    assert bar.total == plan.send_bytes == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert bar.sent == bar.total, "the bar counts file bytes, so it ends at 100 %"
    assert plan.sent_bytes > bar.total  # the tar stream: contents plus headers and padding
    for rel in tree(src):  # mtimes travel, so the next scan matches
        assert int((Path(dest) / rel).stat().st_mtime) == int((src / rel).stat().st_mtime)


def test_re_push_sends_nothing(conn, src, dest):
    push(conn, src, dest)
    plan, bar = push(conn, src, dest)
    assert plan.noop
    assert bar.calls == 0 and bar.sent == 0


def test_changed_file_same_size_new_mtime_is_sent(conn, src, dest):
    push(conn, src, dest)
    f = src / "train/cats/img001.jpg"
    data = bytearray(f.read_bytes())
    data[0] ^= 0xFF
    f.write_bytes(bytes(data))
    os.utime(f, (time.time() + 10, time.time() + 10))
    plan, bar = push(conn, src, dest)
    assert plan.send == ["train/cats/img001.jpg"]
    assert (Path(dest) / "train/cats/img001.jpg").read_bytes() == bytes(data)
    assert bar.total == len(data)
    assert tree(Path(dest)) == tree(src)


def test_changed_file_other_size_is_sent(conn, src, dest):
    push(conn, src, dest)
    f = src / "train/dogs/img000.jpg"
    f.write_bytes(b"smaller")
    os.utime(f, (1_000_000, 1_000_000))  # even an older mtime: the size differs
    plan, _ = push(conn, src, dest)
    assert plan.send == ["train/dogs/img000.jpg"]
    assert (Path(dest) / "train/dogs/img000.jpg").read_bytes() == b"smaller"


def test_touched_but_identical_file_is_not_resent(conn, src, dest):
    push(conn, src, dest)
    f = src / "train/cats/img003.jpg"
    later = int(time.time()) + 100
    os.utime(f, (later, later))
    plan, bar = push(conn, src, dest)
    assert plan.send == [] and plan.touch == ["train/cats/img003.jpg"]
    assert bar.total == 0
    assert int((Path(dest) / "train/cats/img003.jpg").stat().st_mtime) == later
    assert push(conn, src, dest)[0].noop, "the box's mtime was fixed, so the next push is a no-op"


def test_deleted_file_is_deleted_on_the_box(conn, src, dest):
    push(conn, src, dest)
    (src / "validation/cats/v1.jpg").unlink()
    (src / "validation/cats").rmdir()
    plan, _ = push(conn, src, dest)
    assert plan.delete == ["validation/cats/v1.jpg"] and plan.send == []
    assert not (Path(dest) / "validation/cats").exists()
    assert tree(Path(dest)) == tree(src)
    assert (Path(dest) / sync.MARKER).exists()


class Interrupt(Exception):
    pass


def test_interrupted_push_leaves_no_marker_and_the_next_push_completes(conn, src, dest):
    push(conn, src, dest)
    for p in list(src.rglob("*.jpg"))[:20]:  # a second version: most files change
        p.write_bytes(os.urandom(200_000))

    class CutMidStream(Counter):
        def update(self, n):
            super().update(n)
            if self.sent > self.total // 2:
                # Wait (bounded) until the box has unpacked part of the stream,
                # then drop the channel: tar -x on the box sees a cut archive.
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if any(p.stat().st_size == 200_000 for p in Path(dest).rglob("*.jpg")):
                        break
                    time.sleep(0.02)
                raise Interrupt()

    with pytest.raises(Interrupt):
        sync.push(conn, src, dest, CutMidStream())
    deadline = time.monotonic() + 10  # the box's unpack command ends once it sees the cut
    while processes_mentioning(f"cd {dest}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_mentioning(f"cd {dest}") == []
    assert not (Path(dest) / sync.MARKER).exists(), "a cut push must never look complete"
    assert tree(Path(dest)) != tree(src)

    plan, _ = push(conn, src, dest)
    assert plan.send and not plan.complete
    assert tree(Path(dest)) == tree(src)
    assert (Path(dest) / sync.MARKER).exists()
    assert push(conn, src, dest)[0].noop


def test_a_missing_local_dir_is_a_usage_error(conn, tmp_path, dest):
    from common.errors import UsageError

    with pytest.raises(UsageError):
        sync.push(conn, tmp_path / "nope", dest)


def test_plan_hashes_only_size_equal_mtime_different_files():
    E = sync.Entry
    local = {"same": E(5, 1), "touched": E(5, 2), "grown": E(6, 2), "new": E(1, 1)}
    remote = {"same": E(5, 1), "touched": E(5, 1), "grown": E(5, 1), "gone": E(1, 1)}
    asked = []

    def same_content(paths):
        asked.append(sorted(paths))
        return set(paths)

    plan = sync.make_plan(local, remote, True, same_content)
    assert asked == [["touched"]]
    assert plan.touch == ["touched"] and plan.send == ["grown", "new"] and plan.delete == ["gone"]


def test_the_openssh_client_is_used_unless_told_not_to(conn, monkeypatch):
    monkeypatch.delenv("TRAINBOX_SSH_CLIENT", raising=False)
    assert sync.openssh_argv(conn, "true")[0].endswith("ssh")
    monkeypatch.setenv("TRAINBOX_SSH_CLIENT", "paramiko")
    assert sync.openssh_argv(conn, "true") is None


def test_the_boxs_own_pycache_is_neither_counted_nor_deleted(conn, box, tmp_path):
    """Issue 27: python run on the box writes __pycache__ into the pushed code;
    the laptop never sends those files, so the next push must not delete them."""
    import sys

    code = tmp_path / "code"
    (code / "pkg").mkdir(parents=True)
    (code / "pkg" / "__init__.py").write_text("X = 1\n")
    (code / "pkg" / "mod.py").write_text("Y = 2\n")
    (code / "main.py").write_text("import pkg.mod\n")
    dest = f"{box.workdir}/code/proj"
    first = sync.push(conn, code, dest)
    assert sorted(first.send) == ["main.py", "pkg/__init__.py", "pkg/mod.py"]
    from remote.connection import run

    run(conn, f"cd {dest} && {sys.executable} -c 'import main'", "running the code on the box")
    written = sorted(p.relative_to(dest).as_posix() for p in Path(dest).rglob("*.pyc"))
    assert len(written) == 3, written  # the box's own __pycache__ is there
    again = sync.push(conn, code, dest)
    assert again.delete == [] and again.noop, again
    assert sorted(p.relative_to(dest).as_posix() for p in Path(dest).rglob("*.pyc")) == written
    # A real change still goes, and still leaves the box's caches alone.
    (code / "pkg" / "mod.py").write_text("Y = 3  # changed\n")
    (code / "main.py").unlink()
    third = sync.push(conn, code, dest)
    assert third.send == ["pkg/mod.py"] and third.delete == ["main.py"]
    assert sorted(p.relative_to(dest).as_posix() for p in Path(dest).rglob("*.pyc")) == written


def test_paths_the_laptop_ignores_are_neither_sent_nor_deleted(conn, box, tmp_path):
    """A project's ignored folder (say, what the job writes next to its code on
    the box) is the box's own: a push with the project's filter leaves it."""
    from remote.ignore import ProjectFilter

    code = tmp_path / "proj"
    code.mkdir()
    (code / ".gitignore").write_text("outputs/\n*.log\n")
    (code / "train.py").write_text("print('hi')\n")
    (code / "outputs").mkdir()
    (code / "outputs" / "laptop-only.txt").write_text("never sent\n")
    skip = ProjectFilter(code).skip
    dest = f"{box.workdir}/code/proj"
    first = sync.push(conn, code, dest, local=sync.scan_local(code, skip), skip=skip)
    assert sorted(first.send) == [".gitignore", "train.py"]
    (Path(dest) / "outputs").mkdir()
    (Path(dest) / "outputs" / "model.keras").write_text("the box's\n")
    (Path(dest) / "run.log").write_text("the box's\n")
    (Path(dest) / "stray.txt").write_text("not ignored: the laptop has no such file\n")
    again = sync.push(conn, code, dest, local=sync.scan_local(code, skip), skip=skip)
    assert again.delete == ["stray.txt"] and again.send == []
    assert (Path(dest) / "outputs" / "model.keras").exists() and (Path(dest) / "run.log").exists()
