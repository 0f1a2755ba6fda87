"""Inline CARs: a compact plan recorded in one pass over the sources, and any byte range regenerated from it.

A container CAR is `header ‖ sections`, a section `varint(len(cid)+len(data)) ‖ cid ‖ data`. Almost all of its
bytes are raw leaves: 262144-byte slices of source files, each behind a 40-byte section head whose CID is
`01 55 12 20 ‖ sha256(slice)`. The plan keeps everything else verbatim and the leaves by reference:

- literal segments: the header and every other section (dag-pb file nodes, directories, HAMT shards,
  symlinks, the empty-file block), byte for byte as the CAR has them;
- leaf runs: consecutive leaves of one source (source index, offset, count, length of the last one) and
  their 32-byte SHA-256 digests.

The digests are stored (32 bytes per 256 KiB leaf = 128 KiB per GiB of data, 0.012 %): regeneration then
writes a section head without hashing first, and re-hashing what it reads (on by default) proves that the
bytes served are the bytes built. Blocks are deduplicated exactly as `car.write_car` does (the first of equal
CIDs is written), so a regenerated CAR is byte-identical to the one a blitz build writes.

Sources are numbered by their position in the entry list handed to `record_plan` (the container's item order);
whoever regenerates maps those numbers back to readers (`ReadAt`). Pure: no database, no network.
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol, Sequence

from ptolemy_tui.core import sha256_batch, unixfs
from ptolemy_tui.core.car import (CARV1_HEADER_LENGTH, CarResult, SourceChanged, SourceEntry, car_header,
                                  decoded_entry_cids)
from ptolemy_tui.core.multiformats import CID, decode_varint, encode_varint, varint_length

MAGIC = b"PTLPLAN1"
RAW_PREFIX = unixfs._RAW_PREFIX  # CIDv1, raw codec, sha2-256, 32-byte digest
READ_BATCH = 4 * 1024 * 1024     # source bytes read (and hashed) per call, whole leaves
SINK_BATCH = 4 * 1024 * 1024     # CAR bytes handed to the CommP sink per call

_LITERAL = 0
_LEAVES = 1


class PlanError(ValueError):
    """A plan blob that is not one (damaged, truncated, or from a newer Ptolemy)."""


class ReadAt(Protocol):
    """Fills `view` with a source's bytes from `offset`; raises SourceChanged when the source has fewer."""

    def __call__(self, source: int, offset: int, view: memoryview) -> None: ...


# ---------------------------------------------------------------- the plan


@dataclass
class Literal:
    data: bytes


@dataclass
class LeafRun:
    source: int      # index of the source (entry) in the plan's source order
    offset: int      # offset of the first leaf in that source
    count: int
    last_len: int    # every leaf but the last is chunk_size long
    digests: bytes   # 32 bytes per leaf

    def leaf_len(self, i: int, chunk: int) -> int:
        return self.last_len if i == self.count - 1 else chunk


@dataclass
class CarPlan:
    car_size: int
    chunk_size: int
    segments: list = field(default_factory=list)  # Literal | LeafRun, in CAR order
    starts: list[int] = field(default_factory=list)  # CAR offset of each segment (filled by index())

    # ------------------------------------------------ encoding

    def encode(self) -> bytes:
        out = bytearray(MAGIC)
        out += encode_varint(self.car_size) + encode_varint(self.chunk_size) + encode_varint(len(self.segments))
        for seg in self.segments:
            if isinstance(seg, Literal):
                out.append(_LITERAL)
                out += encode_varint(len(seg.data))
                out += seg.data
            else:
                out.append(_LEAVES)
                out += (encode_varint(seg.source) + encode_varint(seg.offset) + encode_varint(seg.count)
                        + encode_varint(seg.last_len))
                out += seg.digests
        return bytes(out)

    @classmethod
    def decode(cls, blob: bytes) -> "CarPlan":
        view = memoryview(blob)
        if bytes(view[:len(MAGIC)]) != MAGIC:
            raise PlanError("not an inline CAR plan (bad magic)")
        pos = len(MAGIC)
        try:
            car_size, pos = decode_varint(view, pos)
            chunk, pos = decode_varint(view, pos)
            n, pos = decode_varint(view, pos)
            segments = []
            for _ in range(n):
                kind = view[pos]
                pos += 1
                if kind == _LITERAL:
                    length, pos = decode_varint(view, pos)
                    data = bytes(view[pos:pos + length])
                    if len(data) != length:
                        raise PlanError("inline CAR plan is truncated")
                    segments.append(Literal(data))
                    pos += length
                elif kind == _LEAVES:
                    source, pos = decode_varint(view, pos)
                    offset, pos = decode_varint(view, pos)
                    count, pos = decode_varint(view, pos)
                    last, pos = decode_varint(view, pos)
                    digests = bytes(view[pos:pos + 32 * count])
                    if len(digests) != 32 * count:
                        raise PlanError("inline CAR plan is truncated")
                    pos += 32 * count
                    segments.append(LeafRun(source, offset, count, last, digests))
                else:
                    raise PlanError(f"inline CAR plan has an unknown segment kind {kind}")
        except IndexError:
            raise PlanError("inline CAR plan is truncated") from None
        if pos != len(view):
            raise PlanError("inline CAR plan has trailing bytes")
        plan = cls(car_size, chunk, segments)
        plan.index()
        if plan.starts and plan.end != car_size:
            raise PlanError(f"inline CAR plan adds up to {plan.end} bytes, not {car_size}")
        return plan

    # ------------------------------------------------ geometry

    def section_len(self, n: int) -> int:
        return varint_length(len(RAW_PREFIX) + 32 + n) + len(RAW_PREFIX) + 32 + n

    def segment_len(self, seg) -> int:
        if isinstance(seg, Literal):
            return len(seg.data)
        full = self.section_len(self.chunk_size)
        return full * (seg.count - 1) + self.section_len(seg.last_len)

    def index(self) -> None:
        self.starts = []
        pos = 0
        for seg in self.segments:
            self.starts.append(pos)
            pos += self.segment_len(seg)
        self.end = pos

    def source_bytes(self) -> int:
        c = self.chunk_size
        return sum(c * (s.count - 1) + s.last_len for s in self.segments if isinstance(s, LeafRun))

    def leaf_count(self) -> int:
        return sum(s.count for s in self.segments if isinstance(s, LeafRun))

    def sources(self) -> set[int]:
        return {s.source for s in self.segments if isinstance(s, LeafRun)}

    def sources_in(self, start: int, end: int) -> set[int]:
        """The sources whose bytes [start, end) of the CAR need."""
        out = set()
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        while i < len(self.segments) and self.starts[i] < end:
            seg = self.segments[i]
            if isinstance(seg, LeafRun):
                out.add(seg.source)
            i += 1
        return out

    # ------------------------------------------------ regeneration

    def iter_range(self, start: int, end: int, read_at: ReadAt, *, verify: bool = True,
                   hash_chunks: Callable | None = None, batch: int = READ_BATCH) -> Iterator[bytes]:
        """The CAR's bytes [start, end), in pieces of at most about `batch` bytes.

        Only the leaves that overlap the range are read, each whole (its digest covers all of it). With
        `verify`, every leaf read is hashed and compared with its recorded digest before any of its bytes are
        yielded: a mismatch raises SourceChanged, so changed sources never produce different bytes.
        """
        if not 0 <= start <= end <= self.car_size:
            raise ValueError(f"range {start}-{end} outside the CAR (0-{self.car_size})")
        if start == end:
            return
        hash_chunks = hash_chunks or sha256_batch.chunk_hasher()
        chunk = self.chunk_size
        full = self.section_len(chunk)
        per_batch = max(1, batch // chunk)
        buf = bytearray(min(per_batch * chunk, max(chunk, batch)))
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        while i < len(self.segments) and self.starts[i] < end:
            seg = self.segments[i]
            s0 = self.starts[i]
            a = max(start, s0) - s0
            b = min(end, s0 + self.segment_len(seg)) - s0
            i += 1
            if isinstance(seg, Literal):
                yield seg.data[a:b]
                continue
            first = min(a // full, seg.count - 1)
            last = min((b - 1) // full, seg.count - 1)
            k = first
            while k <= last:
                n = min(per_batch, last - k + 1)
                lens = [seg.leaf_len(j, chunk) for j in range(k, k + n)]
                total = sum(lens)
                view = memoryview(buf)[:total]
                read_at(seg.source, seg.offset + k * chunk, view)
                if verify:
                    got = hash_chunks(view, chunk)
                    want = seg.digests[32 * k:32 * (k + n)]
                    if got != want:
                        bad = next(j for j in range(n) if got[32 * j:32 * j + 32] != want[32 * j:32 * j + 32])
                        raise SourceChanged(
                            f"source {seg.source} differs from the build at offset {seg.offset + (k + bad) * chunk}")
                parts = []
                pos = 0
                for j, length in enumerate(lens):
                    leaf = k + j
                    sec0 = leaf * full
                    head = (encode_varint(len(RAW_PREFIX) + 32 + length) + RAW_PREFIX
                            + seg.digests[32 * leaf:32 * leaf + 32])
                    sec = head + view[pos:pos + length] if (a > sec0 or b < sec0 + len(head) + length) else None
                    if sec is not None:  # a partial section: cut it to the range
                        lo = max(a - sec0, 0)
                        hi = min(b - sec0, len(head) + length)
                        parts.append(sec[lo:hi])
                    else:
                        parts.append(head)
                        parts.append(view[pos:pos + length])
                    pos += length
                view.release()
                yield b"".join(parts)
                k += n


# ---------------------------------------------------------------- recording


class _Recorder:
    """The `put` of a DagWriter: dedups like car._BlockWriter, feeds the sink, and builds the plan."""

    def __init__(self, sink, chunk_size: int):
        self.sink = sink
        self.plan = CarPlan(car_size=0, chunk_size=chunk_size)
        self.literal = bytearray()
        self.run: LeafRun | None = None
        self.run_digests = bytearray()
        self.seen: set[bytes] = set()
        self.size = CARV1_HEADER_LENGTH
        self.blocks = 0
        self.dup_blocks = 0
        self.dup_bytes = 0
        self.pending = bytearray()  # CAR bytes not yet handed to the sink
        self.src = -1               # where the next leaf comes from (set by the reader per batch)
        self.pos = 0

    def at(self, source: int, offset: int) -> None:
        self.src = source
        self.pos = offset

    def put(self, cid: bytes, data) -> None:
        leaf = type(data) is memoryview and self.src >= 0 and cid[:4] == RAW_PREFIX
        pos = self.pos
        if leaf:
            self.pos += len(data)
        n = len(data)
        if cid in self.seen:
            self.dup_blocks += 1
            self.dup_bytes += varint_length(len(cid) + n) + len(cid) + n
            return
        self.seen.add(cid)
        head = encode_varint(len(cid) + n) + cid
        self.size += len(head) + n
        self.blocks += 1
        if self.sink is not None:
            self.pending += head
            self.pending += data
            if len(self.pending) >= SINK_BATCH:
                self.sink.update(self.pending)
                self.pending = bytearray()
        if leaf:
            run = self.run
            chunk = self.plan.chunk_size
            if (run is not None and run.source == self.src and run.last_len == chunk
                    and run.offset + run.count * chunk == pos):
                run.count += 1
                run.last_len = n
            else:
                self._close_run()
                self._close_literal()
                self.run = LeafRun(self.src, pos, 1, n, b"")
            self.run_digests += cid[4:]
        else:
            self._close_run()
            self.literal += head
            self.literal += data

    def _close_run(self) -> None:
        if self.run is not None:
            self.run.digests = bytes(self.run_digests)
            self.plan.segments.append(self.run)
            self.run = None
            self.run_digests = bytearray()

    def _close_literal(self) -> None:
        if self.literal:
            self.plan.segments.append(Literal(bytes(self.literal)))
            self.literal = bytearray()

    def finish(self, header: bytes) -> CarPlan:
        self._close_run()
        self._close_literal()
        if self.sink is not None and self.pending:
            self.sink.update(self.pending)
            self.pending = bytearray()
        plan = self.plan
        plan.segments.insert(0, Literal(header))
        plan.car_size = self.size
        # merge the header with a literal right after it (small CARs: one segment fewer)
        if len(plan.segments) > 1 and isinstance(plan.segments[1], Literal):
            plan.segments[0:2] = [Literal(header + plan.segments[1].data)]
        plan.index()
        return plan


def record_plan(entries: Sequence[SourceEntry], read_at: ReadAt, *, profile: str = "kubo", wrap: bool = False,
                sink=None, before_read: Callable[[SourceEntry], None] | None = None,
                on_progress: Callable[[int], None] | None = None, hash_chunks: Callable | None = None,
                after_read: Callable[[SourceEntry], None] | None = None,
                _params: unixfs.Params | None = None) -> tuple[CarResult, CarPlan]:
    """The CAR `car.write_car` would write for `entries`, as a plan, reading each source once.

    `read_at(i, offset, view)` reads source i (= entries[i]); `sink` gets the CAR bytes after the header and
    then `set_prefix(header)`, as with write_car; `before_read`/`after_read(entry)` run around each file entry's
    read (source re-checks). Returns the same CarResult write_car would and the plan.
    """
    params = _params or unixfs.get_params(profile)
    index = {id(e): i for i, e in enumerate(entries)}
    root_node = unixfs.dag_root(unixfs.build_tree(entries), wrap)
    recorder = _Recorder(sink, params.chunk_size)
    hasher = hash_chunks or sha256_batch.chunk_hasher()
    total = [0]
    buf = bytearray(max(params.chunk_size, READ_BATCH // params.chunk_size * params.chunk_size))

    def read_file(entry: SourceEntry, chunk_size: int) -> Iterator[memoryview]:
        if before_read is not None:
            before_read(entry)
        if entry.length == 0:
            if after_read is not None:
                after_read(entry)
            return
        src = index[id(entry)]
        pos, end = entry.offset, entry.offset + entry.length
        while pos < end:
            want = min(len(buf), end - pos)
            view = memoryview(buf)[:want]
            read_at(src, pos, view)
            recorder.at(src, pos)
            yield view
            recorder.at(-1, 0)
            view.release()
            pos += want
            total[0] += want
            if on_progress is not None:
                on_progress(total[0])
        if after_read is not None:
            after_read(entry)

    dag = unixfs.DagWriter(recorder.put, read_file, params, hasher)
    root, _ = dag.build(root_node)
    header = car_header(root)
    plan = recorder.finish(header)
    if sink is not None:
        sink.set_prefix(header)
    result = CarResult(root_cid=CID.decode(root)[0], car_size=recorder.size, block_count=recorder.blocks,
                       entry_cids=decoded_entry_cids(dag.entry_cids), source_bytes=total[0], duplicate_blocks=recorder.dup_blocks,
                       duplicate_bytes=recorder.dup_bytes, payload_size=recorder.size)
    return result, plan


# ---------------------------------------------------------------- reading through the source seam


class SourceRanges:
    """ReadAt over a core.source Source: source i is the item range `ranges[i] = (rel, offset, length)`.

    A Reader is opened from the requested offset to the end of the item, and kept while reads go on where the
    last one ended (a source may read ahead inside the range it was given: S3 does); a jump opens a new one.
    At most OPEN readers stay open, so a container of a million small files holds a handful of descriptors.
    """

    OPEN = 4

    def __init__(self, source, ranges: Sequence[tuple[bytes, int, int]]):
        self.source = source
        self.ranges = ranges
        self.readers: dict[int, list] = {}  # i -> [reader, next position], oldest first

    def __call__(self, i: int, offset: int, view: memoryview) -> None:
        cur = self.readers.pop(i, None)
        if cur is not None and cur[1] != offset:
            cur[0].close()
            cur = None
        if cur is None:
            rel, start, length = self.ranges[i]
            cur = [self.source.open(rel, offset, start + length - offset), offset]
            while len(self.readers) >= self.OPEN:
                oldest = next(iter(self.readers))
                self.readers.pop(oldest)[0].close()
        self.readers[i] = cur
        got, want = 0, len(view)
        while got < want:
            n = cur[0].readinto_at(view[got:], offset + got)
            if n == 0:
                raise SourceChanged(f"source {i} is shorter than at the build "
                                    f"({self.source.label(self.ranges[i][0])})")
            got += n
        cur[1] = offset + want

    def close(self) -> None:
        for reader, _ in self.readers.values():
            reader.close()
        self.readers.clear()

    def __enter__(self) -> "SourceRanges":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def entry_ranges(entries: Iterable[SourceEntry]) -> list[tuple[bytes, int, int]]:
    """The (source, offset, length) of each entry, for SourceRanges."""
    return [(e.source, e.offset, e.length) for e in entries]


class LocalFiles(SourceRanges):
    """ReadAt over whole local files given by path (tests, `car create`-style callers)."""

    def __init__(self, paths: Sequence[str | bytes | None]):
        from ptolemy_tui.core.source_local import LocalSource

        super().__init__(LocalSource(b"/"), [(os.fsencode(os.path.abspath(p)) if p is not None else b"", 0, 1 << 62)
                                             for p in paths])
