"""The dataset root DAG: one UnixFS tree over every file of a project, whatever CAR each file (or shard) is in.

Directories mirror the target tree (HAMT shards past the profile's threshold, exactly as the container CARs
build them); each file is linked by the CID its container CAR recorded; a file split into shards becomes ONE
UnixFS file node (a balanced tree of file nodes, at most max_links links each) over its shards' roots, so that
reading it yields the original bytes. Only the new blocks — directories, HAMT shards, whole-file nodes — are
emitted; leaves and every block already in a data CAR are linked, not repeated.

Whole-file CIDs equal the profile's own CID of the whole file (kubo's `ipfs add`, or go-car) when the shard size
is a whole subtree of the balanced layout: shard_size = max_links^k × chunk_size (174^k × 256 KiB: 256 KiB,
43.5 MiB, 7.39 GiB, …). Then every shard but the last is exactly a height-k subtree of the whole file's tree, so
the shard roots are pushed at height k, and the last shard is wrapped up to height k with one-link nodes as
kubo does (go-car carries a lone trailing child up instead, so it is pushed as it is). Other sizes give a valid
file whose CID differs from `ipfs add` of the whole file.

Pure: no I/O besides `put`. Cumulative sizes (Tsize) come from names and sizes alone (core.carsize).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from ptolemy_tui.core import carsize, unixfs
from ptolemy_tui.core.car import CARV1_HEADER_LENGTH, PLACEHOLDER_ROOT, car_header, patch_header
from ptolemy_tui.core.multiformats import CID, encode_varint
from ptolemy_tui.core.unixfs import DirNode, FileBuilder, Params, SourceEntry


@dataclass(frozen=True)
class Piece:
    """One recorded CAR entry of a file: a whole file (offset 0, its size) or one shard."""

    cid: bytes      # binary CID, as recorded when the container CAR was built
    offset: int
    length: int


@dataclass(frozen=True)
class DatasetEntry:
    path: bytes                      # relative to the target, exact bytes
    kind: str                        # "file", "symlink" or "dir" (a directory that must exist, e.g. empty)
    size: int = 0
    pieces: tuple[Piece, ...] = ()   # file: in offset order; symlink: one piece (its block's CID)
    link_target_length: int = 0


@dataclass
class DatasetDag:
    root: bytes                                          # binary CID of the dataset root
    tsize: int
    blocks: int = 0
    whole_files: dict[bytes, bytes] = field(default_factory=dict)  # path -> whole-file CID of each sharded file
    new_bytes: int = 0                                   # bytes of the blocks emitted


def aligned_height(shard_size: int, params: Params) -> int | None:
    """k when shard_size = max_links^k × chunk_size (a shard is one whole subtree), else None."""
    if shard_size <= 0 or shard_size % params.chunk_size:
        return None
    chunks = shard_size // params.chunk_size
    k = 0
    while chunks % params.max_links == 0:
        chunks //= params.max_links
        k += 1
    return k if chunks == 1 else None


def aligned_sizes(params: Params, low: int, high: int) -> list[int]:
    """Every aligned shard size in [low, high]."""
    out = []
    size = params.chunk_size
    while size <= high:
        if size >= low:
            out.append(size)
        size *= params.max_links
    return out


def _natural_height(chunks: int, max_links: int) -> int:
    height, span = 0, 1
    while span < chunks:
        span *= max_links
        height += 1
    return height


def file_tsize(length: int, params: Params) -> int:
    return carsize.file_stats(length, params.chunk_size, params.max_links, params.collapse_single_child)[1]


def whole_file(put, params: Params, pieces: Iterable[Piece], shard_size: int) -> tuple[bytes, int]:
    """The root (cid, tsize) of one file made of its shards' DAGs; new blocks go to put(cid, block)."""
    pieces = list(pieces)
    builder = FileBuilder(put, params)
    k = aligned_height(shard_size, params)
    for i, p in enumerate(pieces):
        item = (p.cid, file_tsize(p.length, params), p.length)
        if k is None:
            builder._push(0, item)
            continue
        if i == len(pieces) - 1 and not params.collapse_single_child:
            chunks = max(1, -(-p.length // params.chunk_size))
            for _ in range(k - _natural_height(chunks, params.max_links)):
                item = builder._reduce([item])  # kubo wraps a short trailing subtree in one-link nodes
        while len(builder.levels) <= k:
            builder.levels.append([])
        builder._push(k, item)
    return builder.finish()


class _LinkedWriter(unixfs.DagWriter):
    """DagWriter whose files are not read but linked by their recorded CIDs."""

    def __init__(self, put, params: Params, entries: dict[bytes, DatasetEntry], shard_size: int):
        super().__init__(put, None, params)
        self.entries = entries
        self.shard_size = shard_size
        self.whole_files: dict[bytes, bytes] = {}

    def _leaf(self, entry: SourceEntry) -> tuple[bytes, int]:
        info = self.entries[entry.dag_path]
        if info.kind == "symlink":
            return info.pieces[0].cid, carsize.symlink_stats(info.link_target_length)[1]
        if len(info.pieces) == 1:
            return info.pieces[0].cid, file_tsize(info.size, self.params)
        cid, tsize = whole_file(self.put, self.params, info.pieces, self.shard_size)
        self.whole_files[info.path] = cid
        return cid, tsize


def check_entry(entry: DatasetEntry) -> None:
    """ValueError unless a file's pieces cover [0, size) in order (a symlink: exactly one piece)."""
    if entry.kind == "symlink":
        if len(entry.pieces) != 1:
            raise ValueError(f"symlink {entry.path!r} needs exactly one recorded CID, has {len(entry.pieces)}")
        return
    if entry.kind != "file":
        return
    pos = 0
    for p in entry.pieces:
        if p.offset != pos:
            raise ValueError(f"{entry.path!r}: pieces do not cover the file (gap or overlap at byte {pos})")
        pos += p.length
    if pos != entry.size or not entry.pieces:
        raise ValueError(f"{entry.path!r}: pieces cover {pos} of {entry.size} bytes")


def build_dataset_dag(entries: Iterable[DatasetEntry], put: Callable[[bytes, bytes], None], *,
                      profile: str | Params = "kubo", shard_size: int) -> DatasetDag:
    """Emit the dataset DAG's new blocks in go-car order (post-order, the root last) through put."""
    params = unixfs.get_params(profile)
    by_path: dict[bytes, DatasetEntry] = {}
    sources = []
    for e in entries:
        check_entry(e)
        by_path[e.path] = e
        sources.append(SourceEntry(e.path, None, 0, e.size, e.kind if e.kind != "dir" else "dir"))
    top = unixfs.build_tree(sources)
    counted = {"blocks": 0, "bytes": 0}

    def counting_put(cid: bytes, block: bytes) -> None:
        counted["blocks"] += 1
        counted["bytes"] += len(block)
        put(cid, block)

    writer = _LinkedWriter(counting_put, params, by_path, shard_size)
    root, tsize = writer.build(top if top.children else DirNode())
    return DatasetDag(root, tsize, counted["blocks"], writer.whole_files, counted["bytes"])


# ---------------------------------------------------------------- the DAG CAR

@dataclass
class BlocksCar:
    root_cid: CID
    car_size: int
    block_count: int


class _Sections:
    """Dedups by CID and writes CAR sections to out and sink (the CommP hasher) as they come."""

    def __init__(self, out, sink):
        self.out = out
        self.sink = sink
        self.seen: set[bytes] = set()
        self.size = CARV1_HEADER_LENGTH
        self.blocks = 0

    def put(self, cid: bytes, block: bytes) -> None:
        if cid in self.seen:
            return
        self.seen.add(cid)
        section = encode_varint(len(cid) + len(block)) + cid + bytes(block)
        self.out.write(section)
        if self.sink is not None:
            self.sink.update(section)
        self.size += len(section)
        self.blocks += 1


def write_dataset_car(entries: Iterable[DatasetEntry], out, *, profile: str | Params = "kubo", shard_size: int,
                      sink=None) -> tuple[BlocksCar, DatasetDag]:
    """Write the DAG CAR (CARv1, only the dataset DAG's new blocks, root last) at out's position.

    sink follows write_car's contract: every byte after the 59-byte header, then set_prefix(header)."""
    start = out.tell()
    out.write(car_header(PLACEHOLDER_ROOT))
    sections = _Sections(out, sink)
    dag = build_dataset_dag(entries, sections.put, profile=profile, shard_size=shard_size)
    patch_header(out, start, dag.root, sink)
    return BlocksCar(CID.decode(dag.root)[0], sections.size, sections.blocks), dag
