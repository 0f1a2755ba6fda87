"""CAR reader: CARv1 and CARv2 (pragma, header, inner CARv1), block listing, verification and UnixFS `ls`.

Every malformed input raises CarFormatError with the byte offset of the problem; callers turn it into one line.
"""
from __future__ import annotations

import hashlib
import os
import stat
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from ptolemy_tui.core import dagpb
from ptolemy_tui.core.display import display_text
from ptolemy_tui.core.multiformats import (CID, CODEC_DAG_CBOR, CODEC_DAG_PB, CODEC_RAW, HASH_BLAKE2B_256,
                                           HASH_IDENTITY, HASH_SHA2_256, FormatError)

CARV2_PRAGMA = bytes.fromhex("0aa16776657273696f6e02")
MAX_HEADER = 32 * 1024 * 1024     # go-car's default limits: a header or section larger than this is corrupt
MAX_SECTION = 64 * 1024 * 1024


class CarFormatError(FormatError):
    def __init__(self, message: str, offset: int | None = None):
        super().__init__(message if offset is None else f"{message} (at byte offset {offset})")
        self.offset = offset


@dataclass
class CarHeader:
    version: int
    roots: list[CID]
    data_start: int           # offset of the first section
    data_end: int | None      # CARv2: end of the inner CARv1; None: end of file


@dataclass
class Section:
    offset: int               # where the section (its length varint) starts
    cid: CID
    data_offset: int
    data: bytes | None        # None when read without data


# ---------------------------------------------------------------- CBOR (just enough for headers and links)

def cbor_decode(buf: bytes | memoryview, pos: int = 0, depth: int = 0):
    """Decode one CBOR item; return (value, end). Tag 42 becomes a CID."""
    if depth > 256:
        raise FormatError("CBOR nested too deeply")
    if pos >= len(buf):
        raise FormatError("truncated CBOR")
    initial = buf[pos]
    major, info = initial >> 5, initial & 31
    pos += 1
    if info < 24:
        arg = info
    elif info in (24, 25, 26, 27):
        n = 1 << (info - 24)
        if pos + n > len(buf):
            raise FormatError("truncated CBOR")
        arg = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    elif major == 7 and info == 31:
        raise FormatError("indefinite-length CBOR is not DAG-CBOR")
    else:
        raise FormatError(f"unsupported CBOR additional info {info}")
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major in (2, 3):
        if pos + arg > len(buf):
            raise FormatError("truncated CBOR string")
        raw = bytes(buf[pos:pos + arg])
        pos += arg
        if major == 3:
            # real chain data carries non-UTF-8 "text"; links are all a reader needs, so be lenient here
            return raw.decode("utf-8", "surrogateescape"), pos
        return raw, pos
    if major == 4:
        items = []
        for _ in range(arg):
            item, pos = cbor_decode(buf, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == 5:
        out = {}
        for _ in range(arg):
            key, pos = cbor_decode(buf, pos, depth + 1)
            value, pos = cbor_decode(buf, pos, depth + 1)
            if isinstance(key, (list, dict)):
                raise FormatError("unhashable CBOR map key")
            out[key] = value
        return out, pos
    if major == 6:
        value, pos = cbor_decode(buf, pos, depth + 1)
        if arg == 42:
            if not isinstance(value, bytes) or not value.startswith(b"\x00"):
                raise FormatError("bad CID in CBOR tag 42")
            cid, end = CID.decode(value, 1)
            if end != len(value):
                raise FormatError("trailing bytes in CBOR tag 42 CID")
            return cid, pos
        return value, pos
    # major 7: simple values and floats
    if info == 20:
        return False, pos
    if info == 21:
        return True, pos
    if info in (22, 23):
        return None, pos
    if info == 25:
        return _half_float(arg), pos
    if info == 26:
        return struct.unpack(">f", arg.to_bytes(4, "big"))[0], pos
    if info == 27:
        return struct.unpack(">d", arg.to_bytes(8, "big"))[0], pos
    raise FormatError(f"unsupported CBOR simple value {info}")


def _half_float(bits: int) -> float:
    return struct.unpack(">e", bits.to_bytes(2, "big"))[0]


def cbor_links(value) -> Iterator[CID]:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, CID):
            yield v
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())


# ---------------------------------------------------------------- reading

def _read_varint(f: BinaryIO, offset: int, what: str) -> tuple[int | None, int]:
    """(value or None at a clean EOF, bytes consumed)."""
    value = 0
    shift = 0
    for i in range(10):
        b = f.read(1)
        if not b:
            if i == 0:
                return None, 0
            raise CarFormatError(f"truncated {what} length", offset)
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value, i + 1
        shift += 7
    raise CarFormatError(f"{what} length varint too long", offset)


def _parse_v1_header(raw: bytes, offset: int) -> list[CID]:
    try:
        header, end = cbor_decode(raw)
    except FormatError as exc:
        raise CarFormatError(f"bad CAR header: {exc}", offset) from None
    if end != len(raw) or not isinstance(header, dict):
        raise CarFormatError("bad CAR header: not a single CBOR map", offset)
    if header.get("version") != 1:
        raise CarFormatError(f"bad CAR header: version {header.get('version')!r}", offset)
    roots = header.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, CID) for r in roots):
        raise CarFormatError("bad CAR header: roots is not a list of CIDs", offset)
    return roots


def read_header(f: BinaryIO, file_size: int) -> CarHeader:
    length, n = _read_varint(f, 0, "header")
    if length is None:
        raise CarFormatError("empty file, not a CAR", 0)
    if length == 0 or length > MAX_HEADER or n + length > file_size:
        raise CarFormatError(f"bad header length {length} (file has {file_size} bytes)", 0)
    raw = f.read(length)
    if n + length == len(CARV2_PRAGMA) and raw == CARV2_PRAGMA[1:]:
        fixed = f.read(40)
        if len(fixed) != 40:
            raise CarFormatError("truncated CARv2 header", len(CARV2_PRAGMA))
        data_offset, data_size, _index = struct.unpack_from("<QQQ", fixed, 16)
        if data_offset < 51 or data_offset + data_size > file_size:
            raise CarFormatError(f"CARv2 data range {data_offset}+{data_size} outside the file", len(CARV2_PRAGMA))
        f.seek(data_offset)
        inner, m = _read_varint(f, data_offset, "header")
        if inner is None or inner == 0 or inner > MAX_HEADER or m + inner > data_size:
            raise CarFormatError(f"bad inner CARv1 header length {inner}", data_offset)
        roots = _parse_v1_header(f.read(inner), data_offset)
        return CarHeader(2, roots, data_offset + m + inner, data_offset + data_size)
    return CarHeader(1, _parse_v1_header(raw, 0), n + length, None)


def iter_sections(f: BinaryIO, header: CarHeader, file_size: int, with_data: bool = True) -> Iterator[Section]:
    end = header.data_end if header.data_end is not None else file_size
    pos = header.data_start
    f.seek(pos)
    while pos < end:
        length, n = _read_varint(f, pos, "section")
        if length is None:
            break
        if length == 0 or length > MAX_SECTION or pos + n + length > end:
            raise CarFormatError(f"bad section length {length} ({end - pos - n} bytes left)", pos)
        head = f.read(min(length, 128))
        try:
            cid, cid_len = CID.decode(head)
        except FormatError as exc:
            raise CarFormatError(f"bad CID in section: {exc}", pos) from None
        data_offset = pos + n + cid_len
        data_len = length - cid_len
        if with_data:
            data = head[cid_len:] + f.read(data_len - (len(head) - cid_len))
            if len(data) != data_len:
                raise CarFormatError("truncated section", pos)
        else:
            data = None
            f.seek(pos + n + length)
        yield Section(pos, cid, data_offset, data)
        pos += n + length


class CarFile:
    """An open CAR: header plus block iteration and random access by multihash."""

    def __init__(self, path: str | bytes | os.PathLike):
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer; anything but a regular file is refused.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise CarFormatError(f"cannot open {os.fsdecode(path)}: {exc.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise CarFormatError(f"{os.fsdecode(path)} is not a regular file (a FIFO, device or directory)")
        os.set_blocking(fd, True)
        self.f = open(fd, "rb", buffering=1024 * 1024)
        self.size = st.st_size
        self.header = read_header(self.f, self.size)
        self._index: dict[bytes, tuple[int, int, CID]] | None = None

    def close(self) -> None:
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def roots(self) -> list[CID]:
        return self.header.roots

    def sections(self, with_data: bool = True) -> Iterator[Section]:
        return iter_sections(self.f, self.header, self.size, with_data)

    def index(self) -> dict[bytes, tuple[int, int, CID]]:
        if self._index is None:
            index = {}
            end = self.header.data_end or self.size
            sections = list(self.sections(with_data=False))
            for i, s in enumerate(sections):
                nxt = sections[i + 1].offset if i + 1 < len(sections) else end
                index.setdefault(s.cid.multihash, (s.data_offset, nxt - s.data_offset, s.cid))
            self._index = index
        return self._index

    def get(self, cid: CID) -> bytes | None:
        if cid.hash_code == HASH_IDENTITY:
            return cid.digest
        hit = self.index().get(cid.multihash)
        if hit is None:
            return None
        self.f.seek(hit[0])
        return self.f.read(hit[1])


# ---------------------------------------------------------------- verify

def block_hash_ok(cid: CID, data: bytes) -> bool | None:
    """True/False when the hash function is known, None when it is not."""
    if cid.hash_code == HASH_SHA2_256:
        return hashlib.sha256(data).digest() == cid.digest
    if cid.hash_code == HASH_BLAKE2B_256:
        return hashlib.blake2b(data, digest_size=32).digest() == cid.digest
    if cid.hash_code == HASH_IDENTITY:
        return data == cid.digest
    return None


def block_links(cid: CID, data: bytes) -> list[CID] | None:
    """The CIDs a block links to; None for a codec whose links this reader cannot see."""
    if cid.codec == CODEC_RAW:
        return []
    if cid.codec == CODEC_DAG_PB:
        return [link.cid for link in dagpb.decode_node(data).links]
    if cid.codec == CODEC_DAG_CBOR:
        value, end = cbor_decode(data)
        if end != len(data):
            raise FormatError("trailing bytes after the dag-cbor value")
        return list(cbor_links(value))
    return None


@dataclass
class VerifyReport:
    version: int
    roots: list[CID]
    blocks: int = 0
    reachable: int = 0
    unknown_codecs: set[int] = field(default_factory=set)
    duplicates: int = 0
    external: int = 0   # verify(partial=True): links to blocks outside the CAR


def verify(path, partial: bool = False) -> VerifyReport:
    """Check every block's hash, the root's presence and (for dag-pb, dag-cbor, raw) DAG completeness.

    partial: a CAR that links into other CARs by design (the dataset DAG CAR): the root must be present, links
    to blocks outside it are counted in report.external instead of failing. Raises CarFormatError with the
    offset of the first problem.
    """
    with CarFile(path) as car:
        report = VerifyReport(car.header.version, car.roots)
        present: set[bytes] = set()
        links: dict[bytes, list[CID] | None] = {}
        for s in car.sections():
            ok = block_hash_ok(s.cid, s.data)
            if ok is None:
                raise CarFormatError(f"block {s.cid} uses an unsupported hash function 0x{s.cid.hash_code:x}",
                                     s.offset)
            if not ok:
                raise CarFormatError(f"block {s.cid} does not hash to its CID", s.offset)
            mh = s.cid.multihash
            if mh in present:
                report.duplicates += 1
            else:
                try:
                    links[mh] = block_links(s.cid, s.data)
                except FormatError as exc:
                    raise CarFormatError(f"block {s.cid} does not decode: {exc}", s.offset) from None
            present.add(mh)
            report.blocks += 1
        if len(car.roots) == 0:
            raise CarFormatError("the header has no root", 0)
        for root in car.roots:
            _check_raw_root(car, root)
        # completeness: everything reachable from the roots must be present
        seen: set[bytes] = set()
        todo = [(r, None) for r in car.roots]
        while todo:
            cid, parent = todo.pop()
            if cid.hash_code == HASH_IDENTITY:
                continue
            mh = cid.multihash
            if mh in seen:
                continue
            seen.add(mh)
            if mh not in present:
                if partial and parent is not None:
                    report.external += 1
                    continue
                where = "the root" if parent is None else f"linked from {parent}"
                raise CarFormatError(f"the DAG is incomplete: block {cid} ({where}) is missing")
            children = links.get(mh)
            if children is None:
                report.unknown_codecs.add(cid.codec)
                continue
            todo.extend((c, cid) for c in reversed(children))
        report.reachable = len(seen) - report.external
        return report


def _check_raw_root(car: CarFile, root: CID) -> None:
    """A raw CID names bytes without links, so a dag-pb node stored under one hides its whole DAG from any
    completeness check (its missing children pass unseen). A root whose bytes decode as a dag-pb node with links
    is that mistake, not a one-block file: refuse it rather than call the DAG complete."""
    if root.codec != CODEC_RAW:
        return
    data = car.get(root)
    if data is None:
        return  # reported as a missing root by the walk
    try:
        node = dagpb.decode_node(data)
    except FormatError:
        return
    if node.links:
        raise CarFormatError(f"the root {root} is a raw CID but its block is a dag-pb node with "
                             f"{len(node.links)} link(s): its DAG cannot be checked (it should be a dag-pb CID)")


# ---------------------------------------------------------------- ls

MAX_LS_PATH = 4096  # PATH_MAX: a deeper path could not be extracted anyway, and its line would be quadratic output


@dataclass
class LsEntry:
    path: bytes
    cid: CID
    kind: str          # "directory", "file", "symlink", "raw", "block", "missing", "repeat" (listed above)


def ls(path) -> tuple[list[LsEntry], list[str]]:
    """UnixFS paths under the root (depth first, link order) and the problems met (missing blocks)."""
    problems: list[str] = []
    return list(iter_ls(path, problems)), problems


def iter_ls(path, problems: list[str]) -> Iterator[LsEntry]:
    """Stream the UnixFS paths under the root, depth first in link order; problems are appended as met.

    A root that is not dag-pb lists every block of the CAR instead. Each block is expanded once: a directory
    reached again through another link (a diamond of links, which would otherwise list 2^depth paths) is
    listed as "repeat" and not descended. Iterative, with memory bounded by the CAR's blocks and links, not by
    its depth; paths longer than MAX_LS_PATH bytes are reported, not descended.
    """
    with CarFile(path) as car:
        if not car.roots:
            raise CarFormatError("the header has no root", 0)
        root = car.roots[0]
        if root.codec not in (CODEC_DAG_PB, CODEC_RAW):
            for s in car.sections(with_data=False):
                yield LsEntry(b"", s.cid, "block")
            return
        try:
            _check_raw_root(car, root)
        except CarFormatError as exc:
            problems.append(str(exc))
        expanded: set[bytes] = set()
        stack: list[tuple[bytes, CID]] = [(b".", root)]
        while stack:
            name, cid = stack.pop()
            if cid.codec == CODEC_RAW:
                yield LsEntry(name, cid, "file")
                continue
            if cid.multihash in expanded:
                yield LsEntry(name, cid, "repeat")
                continue
            data = car.get(cid)
            if data is None:
                problems.append(f"missing block {cid} for {display_path(name)}")
                yield LsEntry(name, cid, "missing")
                continue
            try:
                node = dagpb.decode_node(data)
                fs = dagpb.decode_unixfs(node.data or b"")
            except FormatError as exc:
                raise CarFormatError(f"block {cid} is not UnixFS: {exc}") from None
            kind = {dagpb.UNIXFS_DIRECTORY: "directory", dagpb.UNIXFS_HAMT_SHARD: "directory",
                    dagpb.UNIXFS_SYMLINK: "symlink"}.get(fs.kind, "file")
            yield LsEntry(name, cid, kind)
            if kind != "directory":
                continue
            expanded.add(cid.multihash)
            if len(name) > MAX_LS_PATH:
                problems.append(f"path longer than {MAX_LS_PATH} bytes, not listed further: "
                                f"{display_path(name[:64])}…")
                continue
            children = _directory_children(car, node, fs, problems, name, expanded)
            prefix = b"" if name == b"." else name + b"/"
            for child_name, child_cid in reversed(children):
                stack.append((prefix + child_name, child_cid))


def _directory_children(car: CarFile, node: dagpb.PBNode, fs: dagpb.UnixFSData, problems: list[str],
                        where: bytes, expanded: set[bytes]) -> list[tuple[bytes, CID]]:
    if fs.kind == dagpb.UNIXFS_DIRECTORY:
        return [(link.name or b"", link.cid) for link in node.links]
    # HAMT: links named by a 2-hex-digit bucket label alone are sub-shards; longer ones are entries
    pad = len(f"{(fs.fanout or 256) - 1:X}")
    out = []
    todo = list(node.links)
    todo.reverse()
    while todo:
        link = todo.pop()
        name = link.name or b""
        if len(name) > pad:
            out.append((name[pad:], link.cid))
            continue
        if link.cid.multihash in expanded:  # a sub-shard linked twice: its entries are listed once
            continue
        expanded.add(link.cid.multihash)
        data = car.get(link.cid)
        if data is None:
            problems.append(f"missing HAMT shard {link.cid} under {display_path(where)}")
            continue
        try:
            sub = dagpb.decode_node(data)
        except FormatError as exc:
            raise CarFormatError(f"HAMT shard {link.cid} does not decode: {exc}") from None
        todo.extend(reversed(sub.links))
    return out


def display_path(path: bytes) -> str:
    """A path for one line of text, by the one escaping rule of core.display."""
    return display_text(path)

