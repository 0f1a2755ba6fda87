"""CARv2 output: the CARv1 payload between go-car's v2 header and its default trailing index.

Layout (what go-car's `car create --version 2` and `car.WrapV1File` write, no padding):
  pragma (11 bytes) ‖ header: characteristics (16 zero bytes), data offset (51), data size, index offset
  (51 + data size), each uint64 little-endian ‖ the CARv1 ‖ index.
The default index is MultihashIndexSorted (multicodec 0x0401): int32 count of hash functions; per hash function
(ascending code) uint64 code, int32 count of digest widths; per width (ascending) uint32 record width
(digest + 8), int64 byte length, then (digest ‖ uint64 offset of the section within the CARv1) sorted by digest
bytes. Identity-hash CIDs are not indexed (go-car's default). Every integer is little-endian.
"""
from __future__ import annotations

import dataclasses
import struct
from typing import BinaryIO, Iterable

from ptolemy_tui.core.carsize import CARV1_HEADER_LENGTH
from ptolemy_tui.core.multiformats import HASH_IDENTITY, encode_varint

PRAGMA = bytes.fromhex("0aa16776657273696f6e02")
HEADER_LENGTH = 40
DATA_OFFSET = len(PRAGMA) + HEADER_LENGTH  # 51
INDEX_CODEC = 0x0401  # car-multihash-index-sorted, go-car's default
PREFIX_LENGTH = DATA_OFFSET + CARV1_HEADER_LENGTH  # known last: the v2 header and the CARv1 header


def v2_header(data_size: int) -> bytes:
    """Pragma and fixed header for a CARv1 payload of data_size bytes at offset 51, index right after it."""
    return PRAGMA + bytes(16) + struct.pack("<QQQ", DATA_OFFSET, data_size, DATA_OFFSET + data_size)


def multihash_sorted_index(records: Iterable[tuple[int, bytes, int]]) -> bytes:
    """The index bytes (codec varint included) for (hash code, digest, section offset in the CARv1) records."""
    groups: dict[int, dict[int, dict[bytes, int]]] = {}
    for code, digest, offset in records:
        if code == HASH_IDENTITY:
            continue
        groups.setdefault(code, {}).setdefault(len(digest) + 8, {}).setdefault(bytes(digest), offset)
    out = bytearray(encode_varint(INDEX_CODEC))
    out += struct.pack("<i", len(groups))
    for code in sorted(groups):
        widths = groups[code]
        out += struct.pack("<Qi", code, len(widths))
        for width in sorted(widths):
            entries = widths[width]
            out += struct.pack("<Iq", width, width * len(entries))
            for digest in sorted(entries):
                out += digest
                out += struct.pack("<Q", entries[digest])
    return bytes(out)


def section_records(f: BinaryIO, v1_start: int, v1_end: int) -> list[tuple[int, bytes, int]]:
    """(hash code, digest, offset relative to v1_start) of every section of the CARv1 at [v1_start, v1_end)."""
    from ptolemy_tui.core.carread import CarHeader, iter_sections, _read_varint

    f.seek(v1_start)
    length, n = _read_varint(f, v1_start, "header")
    header = CarHeader(1, [], v1_start + n + (length or 0), v1_end)
    return [(s.cid.hash_code, s.cid.digest, s.offset - v1_start)
            for s in iter_sections(f, header, v1_end, with_data=False)]


class _HoldPrefix:
    """Forwards a CommP sink's stream but keeps the CARv1 header, which goes in after the v2 header."""

    def __init__(self, sink):
        self.sink = sink
        self.v1_header: bytes | None = None

    def update(self, buf) -> None:
        self.sink.update(buf)

    def set_prefix(self, header: bytes) -> None:
        self.v1_header = bytes(header)


def write_car_v2(entries, out: BinaryIO, *, sink=None, **kwargs):
    """`core.car.write_car`, wrapped as CARv2. out must be readable and seekable (the index is read back from
    the section headers). sink: a CommP hasher with deferred_prefix=PREFIX_LENGTH; it gets every byte after
    the first PREFIX_LENGTH (payload, then index) and the prefix at the end, so the piece CID is the whole
    file's. Returns write_car's CarResult with car_size the whole file's length."""
    from ptolemy_tui.core.car import write_car

    start = out.tell()
    out.write(bytes(DATA_OFFSET))
    hold = _HoldPrefix(sink) if sink is not None else None
    result = write_car(entries, out, sink=hold, **kwargs)
    return _finish(out, start, result, hold, sink)


def wrap_blocks_v2(out: BinaryIO, write_v1, sink=None):
    """Like write_car_v2 for any CARv1 writer: write_v1(out, sink) writes a CARv1 at out's position (calling
    sink.update/set_prefix as write_car does) and returns a result with car_size."""
    start = out.tell()
    out.write(bytes(DATA_OFFSET))
    hold = _HoldPrefix(sink) if sink is not None else None
    result = write_v1(out, hold)
    return _finish(out, start, result, hold, sink)


def _finish(out: BinaryIO, start: int, result, hold: _HoldPrefix | None, sink):
    v1_start = start + DATA_OFFSET
    data_size = result.car_size
    v1_end = v1_start + data_size
    out.flush()
    index = multihash_sorted_index(section_records(out, v1_start, v1_end))
    out.seek(v1_end)
    out.write(index)
    header = v2_header(data_size)
    out.seek(start)
    out.write(header)
    out.seek(v1_end + len(index))
    out.flush()
    if sink is not None:
        sink.update(index)
        sink.set_prefix(header + (hold.v1_header or b""))
    return dataclasses.replace(result, car_size=DATA_OFFSET + data_size + len(index))


def wrap_v1_bytes(v1: bytes) -> bytes:
    """A whole CARv1 (bytes) as CARv2 — what `car.WrapV1File` writes."""
    import io

    buf = io.BytesIO(v1)
    index = multihash_sorted_index(section_records(buf, 0, len(v1)))
    return v2_header(len(v1)) + v1 + index
