"""TensorBoard event files, read with the standard library alone: the scalars Keras wrote per epoch.

The laptop has no TensorFlow (tests/test_layering.py), so the file is read by hand:

- TFRecord framing: uint64 length, uint32 masked CRC-32C of the length, the
  data, uint32 masked CRC-32C of the data (all little-endian). A record whose
  CRC is wrong ends the file (a file still being written, or cut short by a
  pull, ends in a partial record).
- Event (tensorflow/core/util/event.proto): step = 2, summary = 5.
- Summary: value = 1 (repeated); Summary.Value: tag = 1, simple_value = 2
  (TF1's scalars), tensor = 8 (TF2's ``tf.summary.scalar``: a TensorProto),
  metadata = 9 (its plugin_data = 1, plugin_name = 1: "scalars").
- TensorProto: dtype = 1, tensor_content = 4 (raw little-endian), float_val =
  5, double_val = 6, int_val = 7, int64_val = 10, half_val = 13.

Records over MAX_RECORD bytes are skipped unread: a scalar's event is tens of
bytes; the big ones are graphs, images and histograms.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_RECORD = 64 * 1024
EVENT_GLOB = "events.out.tfevents.*"

_CRC_TABLE: list[int] = []


def _crc32c(data: bytes) -> int:
    if not _CRC_TABLE:
        for n in range(256):
            c = n
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            _CRC_TABLE.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(path: Path) -> Iterator[bytes]:
    """Each record's data (records over MAX_RECORD: skipped); stops at the first damaged or partial one."""
    with open(path, "rb") as f:
        while True:
            head = f.read(12)
            if len(head) < 12:
                return
            (length,) = struct.unpack("<Q", head[:8])
            if struct.unpack("<I", head[8:])[0] != masked_crc(head[:8]):
                return
            if length > MAX_RECORD:
                f.seek(length + 4, 1)
                continue
            data, crc = f.read(length), f.read(4)
            if len(data) < length or len(crc) < 4 or struct.unpack("<I", crc)[0] != masked_crc(data):
                return
            yield data


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("a truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field of one protobuf message:
    an int for varints, bytes for the rest (8 or 4 raw bytes for the fixed types)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        if i > len(buf):
            raise ValueError("a truncated field")
        yield number, wire, value


# TensorProto's dtypes that hold one number: dtype -> (its *_val field, struct format of tensor_content)
_DTYPES = {1: (5, "<f"), 2: (6, "<d"), 3: (7, "<i"), 9: (10, "<q"), 19: (13, "<e")}


def _signed(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


def tensor_value(buf: bytes) -> float | None:
    """The one number of a scalar TensorProto (None: not numeric, or more than one element)."""
    dtype, content, vals = 1, None, []
    for number, wire, value in fields(buf):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 2 and wire == 2:
            if any(n == 2 for n, _, _ in fields(value)):  # a dimension: not a scalar
                return None
        elif number == 4 and wire == 2:
            content = value
        else:
            vals.append((number, wire, value))
    if dtype not in _DTYPES:
        return None
    field, fmt = _DTYPES[dtype]
    if content is not None:
        return float(struct.unpack(fmt, content)[0]) if len(content) == struct.calcsize(fmt) else None
    for number, wire, value in vals:
        if number != field:
            continue
        if fmt in ("<f", "<d") and wire in (1, 5):  # one unpacked float or double
            return float(struct.unpack(fmt, value)[0])
        if fmt in ("<f", "<d") and wire == 2:  # packed
            size = struct.calcsize(fmt)
            return float(struct.unpack(fmt, value[:size])[0]) if len(value) >= size else None
        if wire == 2:  # packed varints
            n, _ = _varint(value, 0)
        elif wire == 0:
            n = value
        else:
            continue
        if fmt == "<e":
            return float(struct.unpack("<e", struct.pack("<H", n & 0xFFFF))[0])
        return float(_signed(n))
    return None


def _plugin(metadata: bytes) -> str | None:
    for number, wire, value in fields(metadata):
        if number == 1 and wire == 2:
            for n, w, v in fields(value):
                if n == 1 and w == 2:
                    return v.decode(errors="replace")
    return None


def scalars(path: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the scalar summaries in one event file (the last value of a step wins)."""
    out: dict[str, dict[int, float]] = {}
    plugins: dict[str, str] = {}  # TF2 writes a tag's metadata with its first value only
    for data in records(path):
        try:
            step, summary = 0, None
            for number, wire, value in fields(data):
                if number == 2 and wire == 0:
                    step = _signed(value)
                elif number == 5 and wire == 2:
                    summary = value
            if summary is None:
                continue
            for number, wire, value in fields(summary):
                if number != 1 or wire != 2:
                    continue
                tag, got = None, None
                for n, w, v in fields(value):
                    if n == 1 and w == 2:
                        tag = v.decode(errors="replace")
                    elif n == 2 and w == 5:
                        got = struct.unpack("<f", v)[0]
                    elif n == 9 and w == 2:
                        plugin = _plugin(v)
                        if tag is not None and plugin is not None:
                            plugins[tag] = plugin
                    elif n == 8 and w == 2:
                        got = tensor_value(v)
                if tag is None or got is None or plugins.get(tag, "scalars") != "scalars":
                    continue
                out.setdefault(tag, {})[step] = float(got)
        except (ValueError, struct.error):
            continue  # a record that is not an Event we read: skipped
    return out


def epoch_history(root: Path, limit: int) -> dict[str, list[float]]:
    """Keras's per-epoch scalars in the event files under root, as history lists
    (``epoch_loss`` of a ``validation`` folder is ``val_loss``, of any other
    ``loss``); a list's index is the epoch (the TensorBoard step), a missing
    epoch NaN; steps of ``limit`` and over are left out."""
    series: dict[str, dict[int, float]] = {}
    for f in sorted(root.rglob(EVENT_GLOB), key=lambda p: (p.parent.as_posix(), p.name)):
        if not f.is_file():
            continue
        prefix = "val_" if f.parent.name == "validation" else ""
        for tag, by_step in scalars(f).items():
            if not tag.startswith("epoch_"):
                continue  # batch_*, and whatever else was logged per step, are not per epoch
            series.setdefault(prefix + tag[len("epoch_") :], {}).update(
                {s: v for s, v in by_step.items() if 0 <= s < limit}
            )
    return {k: [v.get(s, math.nan) for s in range(max(v) + 1)] for k, v in series.items() if v}
