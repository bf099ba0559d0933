"""The push's compression (remote/wirecodec.py) against the real sshd on
127.0.0.1 and the real decoders (the zstd and gzip binaries the box runs):
trees of compressible and already-compressed files arrive byte-identical,
and what the stream carries holds the already-compressed files' bytes as
they are while the text is compressed."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
from test_sync import tree

from common.errors import UsageError
from remote import sync, wirecodec
from remote.tarstream import TarWriter

TEXT = "def step(model, batch):\n    loss = model.train_on_batch(batch)\n    return loss\n"


def mixed_tree(root: Path) -> dict[str, bytes]:
    """Code and a CSV (compressible), and already-compressed files: by name
    (.jpg, .png, .keras, .zip, .gz) and by content alone (a random .bin)."""
    files = {f"src/pkg/m{i:02}.py": (TEXT * (20 + i)).encode() for i in range(12)}
    files["data/table.csv"] = ("epoch,loss,accuracy\n" + "1,0.5,0.75\n" * 40_000).encode()
    files["data/empty.txt"] = b""
    files["images/cat.jpg"] = os.urandom(300_000)  # bigger than one raw piece of either codec
    files["images/dog.PNG"] = os.urandom(5_000)
    files["model.keras"] = os.urandom(70_000)
    files["bundle.zip"] = os.urandom(1_000)
    files["old/log.gz"] = os.urandom(2_000)
    files["weights/w.bin"] = os.urandom(200_000)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


RAW = ["images/cat.jpg", "images/dog.PNG", "model.keras", "bundle.zip", "old/log.gz", "weights/w.bin"]
PACKED = ["data/table.csv"] + [f"src/pkg/m{i:02}.py" for i in range(12)]
DECODE = {"zstd": ["zstd", "-dcq"], "gzip": ["gzip", "-dc"], "none": ["cat"]}


def carries_as_is(wire: bytes, data: bytes, piece: int) -> bool:
    """Every piece of data (the codec's raw piece size) is in the wire unchanged."""
    return all(data[i : i + piece] in wire for i in range(0, len(data), piece))


@pytest.fixture(params=["openssh", "paramiko"])
def transport(request, monkeypatch):
    if request.param == "openssh":
        monkeypatch.setattr(sync, "OPENSSH_FROM", 0)
    else:
        monkeypatch.setenv("TRAINBOX_SSH_CLIENT", "paramiko")
    return request.param


@pytest.fixture
def recorded(monkeypatch):
    """What each push's stream carries, recorded on its way to the transport."""
    wires: list[bytes] = []
    real = sync.write_tar

    def write_tar(root, plan, local, progress, codec, raw, **sink):
        chunks: list[bytes] = []
        wires.append(b"")
        fd = sink.get("fd")

        def out(b: bytes) -> None:
            chunks.append(bytes(b))
            wires[-1] = b"".join(chunks)
            if fd is None:
                sink["send"](b)
            else:
                view = memoryview(b)
                while view:
                    view = view[os.write(fd, view) :]

        return real(root, plan, local, progress, codec, raw, send=out)

    monkeypatch.setattr(sync, "write_tar", write_tar)
    return wires


@pytest.mark.parametrize("how", ["auto", "zstd", "gzip", "ssh", "none"])
def test_a_mixed_tree_arrives_byte_identical_and_the_next_push_sends_nothing(conn, box, tmp_path, transport, how):
    src = tmp_path / "src"
    mixed_tree(src)
    dest = f"{box.workdir}/code"
    plan = sync.push(conn, src, dest, compress=how)
    assert tree(Path(dest)) == tree(src)
    assert (Path(dest) / sync.MARKER).exists()
    assert plan.tar_bytes > plan.send_bytes
    if how in ("none", "ssh", "auto"):  # auto: a box on 127.0.0.1 gets the plain stream
        assert plan.sent_bytes == plan.tar_bytes
    else:
        assert plan.sent_bytes < 0.8 * plan.tar_bytes, "the text was compressed"
    assert sync.push(conn, src, dest, compress=how).noop


@pytest.mark.parametrize("how", ["zstd", "gzip"])
def test_already_compressed_files_travel_as_they_are_and_the_text_compressed(conn, box, tmp_path, recorded, how):
    src = tmp_path / "src"
    files = mixed_tree(src)
    dest = f"{box.workdir}/code"
    plan = sync.push(conn, src, dest, compress=how)
    (wire,) = recorded
    assert len(wire) == plan.sent_bytes
    piece = wirecodec.make(how).raw_max
    for rel in RAW:
        assert carries_as_is(wire, files[rel], piece), f"{rel} was not sent as it is"
    for rel in PACKED:
        assert files[rel][:200] not in wire, f"{rel} was not compressed"
    # The decoder the box ran turns the wire back into the whole tar stream.
    tar = subprocess.run(DECODE[how], input=wire, capture_output=True, check=True).stdout
    assert len(tar) == plan.tar_bytes
    assert tree(Path(dest)) == tree(src)


def test_auto_sends_a_box_on_this_machine_the_plain_stream(conn, box, tmp_path, recorded):
    """127.0.0.1: no link to save, so no CPU spent compressing (bench/link.py, unshaped)."""
    src = tmp_path / "src"
    mixed_tree(src)
    plan = sync.push(conn, src, f"{box.workdir}/code")
    assert plan.sent_bytes == plan.tar_bytes == len(recorded[0])
    assert recorded[0][:100].rstrip(b"\0") == sync.PENDING.encode(), "a plain tar stream: its first member's name"


def test_the_choice_follows_the_box_and_the_environment(monkeypatch):
    monkeypatch.delenv(sync.COMPRESS_ENV, raising=False)
    assert sync.choose_compression(None, box_zstd=True) == "zstd"
    assert sync.choose_compression(None, box_zstd=False) == "gzip"  # the container box's Debian root: no zstd
    assert sync.choose_compression(None, box_zstd=True, loopback=True) == "none"
    assert sync.choose_compression("zstd", box_zstd=True, loopback=True) == "zstd"
    assert sync.choose_compression("none", box_zstd=True) == "none"
    monkeypatch.setenv(sync.COMPRESS_ENV, "ssh")
    assert sync.choose_compression(None, box_zstd=True) == "ssh"
    monkeypatch.setenv(sync.COMPRESS_ENV, "lz4")
    with pytest.raises(UsageError) as e:
        sync.choose_compression(None, box_zstd=True)
    assert "TRAINBOX_PUSH_COMPRESS=lz4 is not a way to compress a push" in str(e.value)


def test_auto_compresses_only_where_enough_could_shrink():
    local = {"a.jpg": sync.Entry(960, 1), "b.py": sync.Entry(40, 1), "c.py": sync.Entry(60, 1)}
    plan = sync.make_plan(local, {}, False)
    assert sync.worth_compressing(plan, local, raw={"a.jpg"})  # 100 of 1060 bytes: 9 %
    local["a.jpg"] = sync.Entry(5000, 1)
    plan = sync.make_plan(local, {}, False)
    assert not sync.worth_compressing(plan, local, raw={"a.jpg"})  # 2 %: a data set of photos
    assert not sync.worth_compressing(plan, local, raw={"a.jpg", "b.py", "c.py"})


def test_loopback_hosts():
    assert all(map(sync.is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "localhost"]))
    assert not any(map(sync.is_loopback, ["169.254.211.2", "10.0.0.5", "ec2-1-2-3-4.compute.amazonaws.com"]))


def test_the_box_scan_says_whether_zstd_is_there():
    assert sync.box_has_zstd("a.py\t3\t1.0\0/complete\0/zstd\0")
    assert not sync.box_has_zstd("a.py\t3\t1.0\0/complete\0")
    found, complete, _ = sync.parse_remote_scan("a.py\t3\t1.0\0/zstd\0")
    assert set(found) == {"a.py"} and not complete


def test_already_compressed_by_name_or_by_a_sample_of_its_content(tmp_path):
    rnd, text = tmp_path / "r.bin", tmp_path / "t.bin"
    rnd.write_bytes(os.urandom(wirecodec.SAMPLE))
    text.write_bytes(TEXT.encode() * 1000)
    assert wirecodec.already_compressed("x/Photo.JPG", tmp_path / "none", 10)  # the name suffices: never opened
    assert wirecodec.already_compressed("r.bin", rnd, wirecodec.SAMPLE)
    assert not wirecodec.already_compressed("t.bin", text, text.stat().st_size)
    assert not wirecodec.already_compressed("small.bin", rnd, wirecodec.SAMPLE - 1)  # small: the compressor's call


@pytest.mark.parametrize("how", ["zstd", "gzip"])
@pytest.mark.parametrize("sink", ["send", "pipe"])
def test_the_decoded_stream_is_the_plain_tar_stream_byte_for_byte(tmp_path, how, sink):
    """Through a pipe the raw pieces go by sendfile (zstd) or are read (gzip's CRC)."""
    src = tmp_path / "src"
    files = mixed_tree(src)

    def stream(codec: str) -> tuple[bytes, TarWriter]:
        chunks: list[bytes] = []
        if sink == "send":
            tar = TarWriter(chunks.append, codec=wirecodec.make(codec))
            write(tar)
            return b"".join(chunks), tar
        r, w = os.pipe()
        drain = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(r, 1 << 16), b"")))
        drain.start()
        try:
            tar = TarWriter(fd=w, codec=wirecodec.make(codec))
            write(tar)
        finally:
            os.close(w)
            drain.join()
            os.close(r)
        return b"".join(chunks), tar

    def write(tar: TarWriter) -> None:
        for rel in sorted(files):
            tar.add_file(rel, src / rel, len(files[rel]), 1_700_000_000)
        tar.add_bytes(".list", b"a\0b\0")
        tar.close()

    plain, plain_tar = stream("none")
    wire, tar = stream(how)
    assert tar.written == len(wire) < len(plain) == plain_tar.written == tar.tar_bytes
    assert subprocess.run(DECODE[how], input=wire, capture_output=True, check=True).stdout == plain
