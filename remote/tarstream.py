"""A tar stream written straight to a pipe or an SSH channel.

Python's ``tarfile`` in stream mode moves every byte through a buffer it
re-slices on each write and spends ~40 µs building each header: on the
seed's 25,000 small files that made a push 1.4x slower than ``tar c | ssh``
(bench/sync.py). This writer builds plain ustar headers itself (pax, via
``tarfile``, only for names ustar cannot hold) and hands file contents to
the kernel (sendfile) or reads each once, sending ~1 MB at a time.

What it writes is what GNU tar reads: 512-byte blocks, each member's data
padded to a block, two zero blocks at the end, the whole padded to a
10240-byte record.

With a codec (remote/wirecodec.py) the same tar stream leaves compressed,
but for already-compressed files, which go in the codec's raw frames as
they are; decoded, it is byte for byte the plain stream.
"""

from __future__ import annotations

import errno
import os
import tarfile
from collections.abc import Callable

from common.errors import UsageError

from .wirecodec import Codec, already_compressed

BLOCK = 512
RECORD = 20 * BLOCK
FLUSH = 1 << 20
SENDFILE_FROM = 64 << 10  # a smaller raw piece is read into the codec's output: one write, not two
_USTAR_MAX = 8**11  # sizes and mtimes up to 11 octal digits


# A regular file's ustar header from the type flag on: no link name, the
# ustar magic, no owner names or device numbers. Its bytes' sum is part of
# every header's checksum.
_TAIL = (b"0" + bytes(100) + b"ustar\x0000").ljust(BLOCK - 156, b"\0")
_TAIL_SUM = sum(_TAIL) + 8 * ord(" ")  # the checksum field counts as eight spaces
_IDS = b"0000000\0" * 2  # uid, gid


def header(name: str, size: int, mtime: int, mode: int) -> bytes:
    """The header block(s) of a regular file."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > 100 or not raw.isascii() or not (0 <= size < _USTAR_MAX and 0 <= mtime < _USTAR_MAX):
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, mtime, mode & 0o7777
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    head = raw.ljust(100, b"\0") + b"%07o\0" % (mode & 0o7777) + _IDS + b"%011o\0%011o\0" % (size, mtime)
    return head + b"%06o\0 " % (sum(head) + _TAIL_SUM) + _TAIL


def padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


class TarWriter:
    """Members out to ``send(bytes)``, or straight to the pipe ``fd``,
    through ``codec`` (remote/wirecodec.py; none: the tar stream as it is).

    With ``fd``, file contents sent as they are go by ``os.sendfile`` (the
    kernel copies them from the page cache into the pipe; half the CPU of
    reading them through Python, which matters when this process, ssh, sshd
    and tar share two cores). Where sendfile cannot write to a pipe (macOS),
    the files are read instead. ``progress(n)`` follows each file's n bytes;
    ``written`` counts every byte of the stream as sent (compressed),
    ``tar_bytes`` every byte of the tar stream, headers and padding too.
    """

    def __init__(
        self,
        send: Callable[[bytes], None] | None = None,
        progress: Callable[[int], None] = lambda n: None,
        fd: int | None = None,
        codec: Codec | None = None,
    ):
        if (send is None) == (fd is None):
            raise ValueError("give send or fd")
        self._send = send or self._write_fd
        self._fd = fd
        self._sendfile = fd is not None
        self._progress = progress
        self._codec = codec or Codec()
        self._plain = type(self._codec) is Codec
        self._buf = bytearray()
        self._wire = bytearray()  # what the codec made, sent ~FLUSH at a time (not the plain stream's)
        self.written = 0
        self.tar_bytes = 0

    def _write_fd(self, b: bytes) -> None:
        assert self._fd is not None  # no fd: a send callable writes instead
        view = memoryview(b)
        while view:
            view = view[os.write(self._fd, view) :]

    def _out(self, b: bytes) -> None:
        self._buf += b
        if len(self._buf) >= FLUSH:
            self.flush()

    def _emit(self, wire: bytes) -> None:
        if self._plain:
            if wire:
                self._send(wire)
                self.written += len(wire)
            return
        self._wire += wire
        if len(self._wire) >= FLUSH:
            self._drain()

    def _drain(self) -> None:
        if self._wire:
            self._send(bytes(self._wire))
            self.written += len(self._wire)
            self._wire.clear()

    def flush(self) -> None:
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            self.tar_bytes += len(data)
            self._emit(self._codec.pack(data))

    def add_bytes(self, name: str, data: bytes, mode: int = 0o600, mtime: int = 0) -> None:
        self._out(header(name, len(data), mtime, mode))
        self._out(data)
        self._out(padding(len(data)))

    def add_file(self, name: str, path, size: int, mtime: int, raw: bool | None = None) -> None:
        """The file's first ``size`` bytes (its size when it was scanned);
        raw if the codec compresses and the file is already compressed
        (``raw``, or wirecodec.already_compressed when None)."""
        fd = os.open(path, os.O_RDONLY)
        try:
            self._out(header(name, size, mtime, os.fstat(fd).st_mode))
            if self._plain:
                if not (self._sendfile and self._send_file(fd, 0, size, path)):
                    self._out(_read_exactly(fd, size, path))
            elif size and (already_compressed(name, path, size) if raw is None else raw):
                self._add_raw(fd, size, path)
            else:
                left = size
                while left:
                    chunk = os.read(fd, min(left, FLUSH))
                    if not chunk:
                        raise _shrank(path)
                    self._out(chunk)
                    left -= len(chunk)
        finally:
            os.close(fd)
        self._out(padding(size))
        self._progress(size)

    def _add_raw(self, fd: int, size: int, path) -> None:
        """The file's bytes as they are, in a frame of the codec's raw pieces."""
        codec = self._codec
        if size <= codec.raw_max and (size < SENDFILE_FROM or not self._sendfile or codec.needs_data):
            # One piece (a photo of a data set, say): one call, the file's 25,000th as cheap as its first.
            data = _pread_exactly(fd, 0, size, path)
            tar, self.tar_bytes = bytes(self._buf), self.tar_bytes + len(self._buf) + size
            self._buf.clear()
            head = codec.pack(tar) + codec.end() + codec.raw_start()  # raw_start first: gzip's CRC starts there
            self._emit(head + codec.raw_piece(size, True, data) + data + codec.raw_end())
            return
        self.flush()
        self._emit(codec.end())
        self._emit(codec.raw_start())
        offset = 0
        while offset < size:
            n = min(codec.raw_max, size - offset)
            last = offset + n == size
            if self._sendfile and not codec.needs_data and n >= SENDFILE_FROM:
                self._emit(codec.raw_piece(n, last))
                self._drain()
                if not self._send_file(fd, offset, n, path):
                    self._emit(_pread_exactly(fd, offset, n, path))
                    self.tar_bytes += n
            else:
                data = _pread_exactly(fd, offset, n, path)
                self._emit(codec.raw_piece(n, last, data))
                self._emit(data)
                self.tar_bytes += n
            offset += n
        self._emit(codec.raw_end())

    def _send_file(self, src: int, start: int, size: int, path) -> bool:
        """The file's ``size`` bytes from ``start`` by sendfile; False if this system cannot."""
        self.flush()
        assert self._fd is not None  # sendfile needs the fd (callers check)
        offset = 0
        while offset < size:
            try:
                n = os.sendfile(self._fd, src, start + offset, size - offset)
            except OSError as e:
                if offset == 0 and e.errno in (errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK, errno.EOPNOTSUPP):
                    self._sendfile = False
                    return False
                raise
            if n == 0:
                raise _shrank(path)
            offset += n
            self.written += n
            self.tar_bytes += n
        return True

    def close(self) -> None:
        """The end-of-archive blocks and the record padding; flushes everything and ends the last frame."""
        end = self.tar_bytes + len(self._buf) + 2 * BLOCK
        self._out(bytes(2 * BLOCK + (-end % RECORD)))
        self.flush()
        self._emit(self._codec.end())
        self._drain()


def _read_exactly(fd: int, size: int, path) -> bytes:
    parts, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            raise _shrank(path)
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _pread_exactly(fd: int, offset: int, size: int, path) -> bytes:
    parts, left = [], size
    while left:
        chunk = os.pread(fd, left, offset + size - left)
        if not chunk:
            raise _shrank(path)
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _shrank(path) -> UsageError:
    return UsageError(f"{path} shrank while it was being sent", "run the command again once it is written")
