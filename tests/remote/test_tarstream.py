"""The push's hand-built tar stream, read back by Python's tarfile and by GNU tar."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import threading
from contextlib import contextmanager

import pytest

from common.errors import UsageError
from remote.tarstream import RECORD, TarWriter

# Sizes around the block boundary, an empty file, names ustar cannot hold
# (non-ASCII, > 100 bytes) and one it can only just hold.
MEMBERS = {
    "empty": b"",
    "a/one-block-minus-one": os.urandom(511),
    "a/one-block": os.urandom(512),
    "a/one-block-plus-one": os.urandom(513),
    "b/" + "x" * 98: b"exactly 100 bytes of name",
    "deep/" + "/".join(["d" * 40] * 4) + "/long-name.jpg": os.urandom(3000),
    "ünïcode/kätze.jpg": os.urandom(700),
    "spaces and 'quotes'/x.jpg": b"q",
}


@contextmanager
def writer(sink: str, chunks: list, **kw):
    """A TarWriter sending to a callable, or to a pipe (the sendfile path) drained by a thread."""
    if sink == "send":
        yield TarWriter(chunks.append, **kw)
        return
    r, w = os.pipe()
    drain = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(r, 1 << 16), b"")))
    drain.start()
    try:
        yield TarWriter(fd=w, **kw)
    finally:
        os.close(w)
        drain.join()
        os.close(r)


@pytest.fixture(params=["send", "pipe"])
def archive(tmp_path, request):
    src = tmp_path / "src"
    for i, (name, data) in enumerate(MEMBERS.items()):
        p = src / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, 0o640 if i % 2 else 0o755)
    chunks, progress = [], []
    with writer(request.param, chunks, progress=progress.append) as tar:
        for name, data in MEMBERS.items():
            tar.add_file(name, src / name, len(data), 1_700_000_000 + len(data))
        tar.add_bytes(".list", b"a\0b\0")
        tar.close()
    return b"".join(chunks), tar, progress, src


def test_python_tarfile_reads_every_member_with_its_metadata(archive):
    data, tar, progress, src = archive
    assert len(data) == tar.written and len(data) % RECORD == 0
    assert progress == [len(d) for d in MEMBERS.values()]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        got = {m.name: m for m in t.getmembers()}
        assert set(got) == set(MEMBERS) | {".list"}
        for name, body in MEMBERS.items():
            m = got[name]
            assert m.isfile() and t.extractfile(m).read() == body
            assert m.mtime == 1_700_000_000 + len(body)
            assert m.mode == (os.stat(src / name).st_mode & 0o7777)
        assert t.extractfile(got[".list"]).read() == b"a\0b\0"


def test_gnu_tar_extracts_it_without_a_warning(archive, tmp_path):
    data, *_ = archive
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.run(["tar", "-x", "-f", "-", "-C", str(out)], input=data, capture_output=True)
    assert p.returncode == 0 and p.stderr == b""
    for name, body in MEMBERS.items():
        assert (out / name).read_bytes() == body
        assert int((out / name).stat().st_mtime) == 1_700_000_000 + len(body)


@pytest.mark.parametrize("sink", ["send", "pipe"])
def test_a_file_that_shrank_after_the_scan_stops_the_stream(tmp_path, sink):
    f = tmp_path / "f"
    f.write_bytes(b"short")
    with writer(sink, []) as tar, pytest.raises(UsageError, match="shrank"):
        tar.add_file("f", f, 100, 0)


@pytest.mark.parametrize("sink", ["send", "pipe"])
def test_a_file_that_grew_after_the_scan_sends_its_scanned_size(tmp_path, sink):
    f = tmp_path / "f"
    f.write_bytes(b"0123456789")
    chunks = []
    with writer(sink, chunks) as tar:
        tar.add_file("f", f, 4, 0)
        tar.close()
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:") as t:
        assert t.extractfile("f").read() == b"0123"


@pytest.mark.parametrize(
    "name,size,mtime,mode",
    [
        ("a", 0, 0, 0o644),
        ("train/cats/cats.1.jpg", 20_000, 1_700_000_000, 0o100755),
        ("n" * 100, 511, 5, 0o600),
    ],
)
def test_a_plain_header_is_byte_for_byte_tarfiles_ustar_header(name, size, mtime, mode):
    from remote.tarstream import header

    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = size, mtime, mode & 0o7777, "", ""
    assert header(name, size, mtime, mode) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
