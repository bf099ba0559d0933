"""How the push's tar stream travels: compressed, but already-compressed files as they are.

A codec turns the tar stream into what crosses the link, and names the box's
command that turns it back (piped into ``tar -x``):

- ``zstd`` (the ``zstandard`` package here, the box's ``zstd`` binary there):
  the tar stream as zstd frames; each already-compressed file in a frame of
  its own made of *raw blocks* (3-byte headers, the file's bytes as they are,
  sent by sendfile where the sink is a pipe).
- ``gzip`` (the standard library here, the box's ``gzip`` there: every Linux
  has it, Debian's minbase root included): gzip members; each
  already-compressed file in a member of *stored* deflate blocks.
- ``none``: the tar stream itself.

Both decoders read concatenated frames or members as one stream, so the
decoded stream is byte for byte the tar stream ``none`` would send.

Already compressed (never compressed again): a name ending in one of
COMPRESSED_SUFFIXES, or a file of at least SAMPLE bytes whose first SAMPLE
bytes zlib at level 1 shrinks by less than 10 %. Smaller files of other names
go through the compressor, whose own raw blocks take what does not shrink.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

COMPRESSED_SUFFIXES = frozenset(
    ".jpg .jpeg .png .gif .webp .avif .heic .zip .keras .npz .gz .tgz .zst .zstd .xz .txz .bz2 .lz4 .7z "
    ".rar .whl .jar .mp3 .mp4 .m4a .ogg .flac .mkv .webm .mov .avi .pdf".split()
)
SAMPLE = 64 << 10
SHRINKS_BELOW = 0.9  # a sample that compresses to more than this share of itself: already compressed

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Frame header descriptor 0 (no content size, not single-segment, no checksum,
# no dictionary), then a window of 2^17 bytes: raw blocks may each be that big.
ZSTD_RAW_FRAME = ZSTD_MAGIC + b"\x00\x38"
ZSTD_RAW_BLOCK = 1 << 17
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no time, unknown OS
STORED_BLOCK = 0xFFFF


def already_compressed(name: str, path, size: int) -> bool:
    """Whether the file's bytes go raw (see the module's docstring)."""
    if os.path.splitext(name)[1].lower() in COMPRESSED_SUFFIXES:
        return True
    if size < SAMPLE:
        return False
    with open(path, "rb") as f:
        sample = f.read(SAMPLE)
    return len(zlib.compress(sample, 1)) > SHRINKS_BELOW * len(sample)


class Codec:
    """``none``: the tar stream as it is. The base of the others."""

    name = "none"
    decoder = ""  # the box's command between the link and tar -x
    raw_max = 1 << 62  # the most bytes one raw piece carries
    needs_data = False  # raw_piece must see the bytes (gzip's CRC); else they may go by sendfile

    def pack(self, data: bytes) -> bytes:
        """Tar bytes to compress, in the current frame (opened if none is)."""
        return data

    def end(self) -> bytes:
        """Closes the current frame, if one is open."""
        return b""

    def raw_start(self) -> bytes:
        return b""

    def raw_piece(self, n: int, last: bool, data: bytes | None = None) -> bytes:
        """What goes before the next n raw bytes."""
        return b""

    def raw_end(self) -> bytes:
        return b""


class Zstd(Codec):
    name = "zstd"
    decoder = "zstd -dcq"
    raw_max = ZSTD_RAW_BLOCK

    def __init__(self, level: int = 3):
        import zstandard

        self._cctx = zstandard.ZstdCompressor(level=level)
        self._obj: Any = None

    def pack(self, data: bytes) -> bytes:
        if self._obj is None:
            self._obj = self._cctx.compressobj()
        return self._obj.compress(data)

    def end(self) -> bytes:
        obj, self._obj = self._obj, None
        return obj.flush() if obj is not None else b""

    def raw_start(self) -> bytes:
        return ZSTD_RAW_FRAME

    def raw_piece(self, n: int, last: bool, data: bytes | None = None) -> bytes:
        return ((n << 3) | int(last)).to_bytes(3, "little")  # block type 0: raw


class Gzip(Codec):
    name = "gzip"
    decoder = "gzip -dc"
    raw_max = STORED_BLOCK
    needs_data = True

    def __init__(self, level: int = 1):
        self._level = level
        self._obj: Any = None
        self._crc = self._size = 0

    def pack(self, data: bytes) -> bytes:
        if self._obj is None:
            self._obj = zlib.compressobj(self._level, zlib.DEFLATED, 31)
        return self._obj.compress(data)

    def end(self) -> bytes:
        obj, self._obj = self._obj, None
        return obj.flush() if obj is not None else b""

    def raw_start(self) -> bytes:
        self._crc = self._size = 0
        return GZIP_HEADER

    def raw_piece(self, n: int, last: bool, data: bytes | None = None) -> bytes:
        assert data is not None and len(data) == n  # needs_data
        self._crc = zlib.crc32(data, self._crc)
        self._size += n
        return bytes([int(last)]) + struct.pack("<HH", n, n ^ 0xFFFF)  # a stored block, final or not

    def raw_end(self) -> bytes:
        return struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)


def make(name: str) -> Codec:
    return {"zstd": Zstd, "gzip": Gzip, "none": Codec}[name]()
