"""Random access to the blocks of many CAR files (v1 or v2) without holding their data in memory.

Opening a set reads only the section headers of each CAR (a small pread per block: the varint and the CID) and
keeps one entry per block: multihash -> (CAR number, data offset, data length), packed into one int. A block is
read on demand with one pread. Memory is about 150 bytes per block — ~0.6 MiB per GiB of data with 256 KiB
leaves — whatever the data size.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field

from ptolemy_tui.core.carread import MAX_SECTION, CarFormatError, read_header
from ptolemy_tui.core.multiformats import CID, CODEC_DAG_PB, HASH_IDENTITY, FormatError, decode_varint

_LEN_BITS = 27   # a section is at most MAX_SECTION (64 MiB) < 2^27
_CAR_BITS = 24   # up to 16M CAR files in one set
_HEAD = 64       # bytes read at each section start: varint (≤ 10) + CID (≤ 54 here for the usual hashes)
OPEN_FILES = 128  # CARs kept open at once (a dataset may have thousands; the fd limit is often 1024)


@dataclass
class CarInfo:
    path: str | bytes
    version: int
    roots: list[CID]
    blocks: int = 0
    codecs: set[int] = field(default_factory=set)

    @property
    def only_dag_pb(self) -> bool:
        return self.codecs <= {CODEC_DAG_PB}


class BlockIndex:
    """The blocks of a set of CARs by multihash; the first CAR holding a block wins."""

    def __init__(self):
        self.cars: list[CarInfo] = []
        self._fds: OrderedDict[int, int] = OrderedDict()  # CAR number -> open fd, least recently used first
        self._where: dict[bytes, int] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])

    def _fd(self, number: int) -> int:
        fd = self._fds.get(number)
        if fd is not None:
            self._fds.move_to_end(number)
            return fd
        if len(self._fds) >= OPEN_FILES:
            os.close(self._fds.popitem(last=False)[1])
        fd = self._fds[number] = os.open(self.cars[number].path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        return fd

    def add(self, path: str | bytes) -> CarInfo:
        """Index one CAR file. Raises CarFormatError (with the offset) for a malformed one."""
        number = len(self.cars)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            size = os.fstat(fd).st_size
            with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
                header = read_header(f, size)
            info = CarInfo(path, header.version, header.roots)
            end = header.data_end if header.data_end is not None else size
            pos = header.data_start
            where = self._where
            while pos < end:
                head = os.pread(fd, _HEAD, pos)
                try:
                    length, n = decode_varint(head, 0)
                    if length == 0 or length > MAX_SECTION or pos + n + length > end:
                        raise CarFormatError(f"bad section length {length}", pos)
                    cid, after = CID.decode(head, n)
                except FormatError as exc:
                    if isinstance(exc, CarFormatError):
                        raise
                    raise CarFormatError(f"bad section in {os.fsdecode(path)}: {exc}", pos) from None
                data_offset = pos + after
                data_len = length - (after - n)
                if data_len < 0:
                    raise CarFormatError("section shorter than its CID", pos)
                info.blocks += 1
                info.codecs.add(cid.codec)
                if cid.hash_code != HASH_IDENTITY:
                    where.setdefault(cid.multihash, (data_offset << (_LEN_BITS + _CAR_BITS))
                                     | (data_len << _CAR_BITS) | number)
                pos += n + length
        finally:
            os.close(fd)
        self.cars.append(info)
        return info

    def __contains__(self, cid: CID) -> bool:
        return cid.hash_code == HASH_IDENTITY or cid.multihash in self._where

    def __len__(self) -> int:
        return len(self._where)

    def locate(self, cid: CID) -> tuple[int, int, int] | None:
        """(CAR number, data offset, length) of a block, or None."""
        packed = self._where.get(cid.multihash)
        if packed is None:
            return None
        return (packed & ((1 << _CAR_BITS) - 1), packed >> (_LEN_BITS + _CAR_BITS),
                (packed >> _CAR_BITS) & ((1 << _LEN_BITS) - 1))

    def get(self, cid: CID) -> bytes | None:
        if cid.hash_code == HASH_IDENTITY:
            return cid.digest
        hit = self.locate(cid)
        if hit is None:
            return None
        number, offset, length = hit
        data = os.pread(self._fd(number), length, offset)
        if len(data) != length:
            raise CarFormatError(f"{os.fsdecode(self.cars[number].path)} is shorter than when it was indexed",
                                 offset)
        return data

    def car_path(self, cid: CID) -> str | bytes | None:
        hit = self.locate(cid)
        return None if hit is None else self.cars[hit[0]].path
