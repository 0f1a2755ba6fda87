"""Packing files into containers whose CAR stays ≤ car_size (pure: no DB, no I/O).

- A regular file larger than shard_size becomes shards of shard_size (the last one the remainder); shard N
  (counted from 0) of `a/b.bin` is `a/b.bin.ptolemy<N>` in its CAR. Files ≤ shard_size are never split.
- Symlinks are packed as UnixFS symlink entries (length 0), so the tree loses nothing.
- Pieces are taken in path order (the caller sorts them so that a directory's files stay together). When the
  next piece does not fit, a bounded best-fit look-ahead over the next LOOKAHEAD pieces fills the gap with the
  largest pieces that still fit; a file's shards are never reordered (a skipped shard defers the rest of its
  file). Then the container is closed and the skipped pieces open the next one.
- Every container CAR is written wrapped (CONTAINER_WRAP): its root is a directory holding the items under
  their full paths relative to target_dir, so each file's name survives inside the CAR even when a container
  holds a single file or shard.
- The CAR length comes from one name, `car_size_model()`: the incremental ContainerSizer (byte-exact for
  plain directories, a strict upper bound for HAMT directories). A container holding a HAMT directory gets its
  final figure from `exact_car_size()` (core.carsize.predict_car_size, which builds the HAMT tries).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import itertools
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

from ptolemy_tui.core.carmodel import ContainerSizer
from ptolemy_tui.core.carsize import predict_car_size
from ptolemy_tui.core.unixfs import SourceEntry

CONTAINER_WRAP = True
LOOKAHEAD = 512  # pieces examined to fill a container's gap; bounds the work per container
HANDOVER = 10000  # placed pieces handed to on_pieces at a time
SHARD_SUFFIX = b".ptolemy"
# The least an entry adds to a CAR beyond its bytes: its block's CID and framing (37) and its link in the
# directory (44 with a one-byte name). A cheap test that never turns away a piece that fits.
MIN_ENTRY_COST = 81


class PackingError(ValueError):
    """A piece that cannot fit even an empty container (shard_size too close to car_size)."""


class Piece(NamedTuple):
    """One container item to be: a whole file, a shard of one, or a symlink.

    A NamedTuple so that a caller with a million files may hand in plain tuples in this field order (five
    times cheaper to build); pack() only indexes them."""

    file_id: int
    car_path: bytes
    offset: int
    length: int
    shard_index: int | None = None
    kind: str = "file"  # "file" or "symlink"
    target_len: int = 0  # symlink target length (its UnixFS node carries it)


# Field positions, for the hot loops and for callers building plain tuples.
FILE_ID, CAR_PATH, OFFSET, LENGTH, SHARD_INDEX, KIND, TARGET_LEN = range(7)


@dataclass
class PackedContainer:
    pieces: list = field(default_factory=list)  # Piece (or tuples in Piece's field order), in CAR item order
    predicted_size: int = 0
    data_bytes: int = 0
    shard_count: int = 0
    item_count: int = 0
    exact: bool = True  # False: predicted_size is the sizer's upper bound (a HAMT and no exact predictor)


def shard_name(path: bytes, index: int) -> bytes:
    return path + SHARD_SUFFIX + str(index).encode()


def whole_file_ids(pieces: Sequence) -> list[int | None]:
    """Each piece's file id where the piece is its whole file (its own path, from offset 0, its size: a file
    piece with no shard index, as pieces_of makes them), else None. The store derives such an item from the
    file's row."""
    return [p[0] if p[4] is None and p[5] == "file" else None for p in pieces]


def pieces_of(file_id: int, path: bytes, size: int, shard_size: int) -> list[Piece]:
    """The pieces of one regular file: itself when ≤ shard_size, else shards of shard_size."""
    if size <= shard_size:
        return [Piece(file_id, path, 0, size)]
    count = -(-size // shard_size)
    return [Piece(file_id, shard_name(path, n), n * shard_size, min(shard_size, size - n * shard_size), n)
            for n in range(count)]


def car_size_model(profile: str = "kubo") -> ContainerSizer:
    """The one place the packer gets its CAR-length model from."""
    return ContainerSizer(profile, wrap=CONTAINER_WRAP)


def source_entries(pieces: Sequence) -> list[SourceEntry]:
    """The pieces as the formats code sees them (the build writes exactly these, with CONTAINER_WRAP)."""
    return [SourceEntry(p[CAR_PATH], None, p[OFFSET], p[LENGTH], p[KIND],
                        b"x" * p[TARGET_LEN] if p[KIND] == "symlink" else b"") for p in pieces]


def exact_car_size(pieces: Sequence, profile: str = "kubo") -> tuple[int, bool]:
    """(CAR length, True): the formats issue's predict_car_size, byte-exact with the build's write_car."""
    return predict_car_size(source_entries(pieces), profile=profile, wrap=CONTAINER_WRAP), True


def pack(pieces: Iterable, car_size: int, *, profile: str = "kubo", lookahead: int = LOOKAHEAD,
         exact: Callable[[list, str], tuple[int, bool]] = exact_car_size,
         on_pieces: Callable[[list], None] | None = None) -> Iterator[PackedContainer]:
    """Yield containers, in order, holding every piece exactly once. Raises PackingError for a piece that fits
    no container. `pieces` is any iterable in path order; it is read as the packing goes, through a window
    of the look-ahead's length, so memory does not grow with the number of pieces.

    With `on_pieces`, the pieces are handed over in item order, a list at a time (HANDOVER at most), as they
    are placed, instead of being kept in the container: memory then stays flat even for a container of
    millions of items. Such a container's `pieces` stays empty; when it holds a HAMT directory its `exact` is
    False and `predicted_size` the sizer's upper bound, for the caller to make exact from the items it kept."""
    window = _Window(iter(pieces))
    while window.has(0):
        sizer = car_size_model(profile)
        try_add = sizer.try_add
        box = PackedContainer()
        placed: list = []
        count = data = shards = 0
        # In order while pieces fit (the hot loop: locals only, the window refilled when it runs dry).
        buf, taken, pos = window.buf, window.taken, window.pos
        while True:
            if pos >= len(buf):
                window.pos = pos
                if not window.has(0):
                    break
                buf, taken, pos = window.buf, window.taken, window.pos
            if taken[pos]:
                pos += 1
                continue
            p = buf[pos]
            if not try_add(p[1], p[3], car_size, p[5], p[6]):
                break
            placed.append(p)
            data += p[3]
            if p[4] is not None:
                shards += 1
            pos += 1
            if on_pieces is not None and len(placed) >= HANDOVER:
                count += len(placed)
                on_pieces(placed)
                placed = []
        window.pos = pos
        count += len(placed)
        if not count:
            p = window.first()
            raise PackingError(
                f"{p[CAR_PATH].decode('utf-8', 'backslashreplace')} ({p[LENGTH]} bytes) does not fit a "
                f"{car_size}-byte CAR with its UnixFS overhead: lower the shard size below the CAR size")
        if window.has(0):
            gap = _fill_gap(window, lookahead, sizer, car_size)
            placed.extend(gap)
            count += len(gap)
            data += sum(p[LENGTH] for p in gap)
            shards += sum(1 for p in gap if p[SHARD_INDEX] is not None)
        if on_pieces is not None:
            if placed:
                on_pieces(placed)
        else:
            box.pieces = placed
        box.item_count, box.data_bytes, box.shard_count = count, data, shards
        if not sizer.has_hamt:
            box.predicted_size, box.exact = sizer.car_size, True
        elif on_pieces is None:
            box.predicted_size, box.exact = exact(placed, profile)
        else:
            box.predicted_size, box.exact = sizer.car_size, False
        if box.predicted_size > car_size:  # the sizer is an upper bound: this cannot happen
            raise AssertionError(f"container over its CAR size: {box.predicted_size} > {car_size}")
        yield box


class _Window:
    """The pieces not yet placed, read from the iterator as far ahead as the packer looks.

    `buf[pos]` is the first piece not yet placed in order; pieces behind it are placed and dropped in
    bulk now and then; `taken[j]` marks a piece ahead of `pos` that a look-ahead already placed."""

    COMPACT_AT = 1 << 14

    def __init__(self, source: Iterator):
        self.source = source
        self.buf: list = []
        self.taken = bytearray()
        self.pos = 0
        self.done = False

    def has(self, offset: int) -> bool:
        """True when the piece `offset` places after the first unplaced one exists (reading it if need be)."""
        if len(self.buf) <= self.pos + offset and not self.done:
            self._read(self.pos + offset + 1 - len(self.buf))  # may compact: pos moves, so compare afresh
        return len(self.buf) > self.pos + offset

    def _read(self, at_least: int) -> None:
        if self.pos >= self.COMPACT_AT:
            del self.buf[:self.pos]
            del self.taken[:self.pos]
            self.pos = 0
        chunk = max(at_least, 1024)
        got = list(itertools.islice(self.source, chunk))
        if len(got) < chunk:
            self.done = True
        self.buf.extend(got)
        self.taken.extend(bytes(len(got)))

    def first(self):
        return self.buf[self.pos]

    def ahead(self, count: int) -> range:
        """Indexes into `buf` of up to `count` pieces from the first unplaced one on."""
        self.has(count - 1)
        return range(self.pos, min(len(self.buf), self.pos + count))


def _fill_gap(window: _Window, lookahead: int, sizer: ContainerSizer, car_size: int) -> list:
    """Best-fit look-ahead over the next `lookahead` unplaced pieces: place the largest pieces that still fit,
    until none does; return them in the order placed. A file whose earlier piece stays behind keeps all its
    later pieces behind too, so shards stay in order."""
    buf, taken = window.buf, window.taken
    span = window.ahead(lookahead)
    placed = []
    while True:
        gap = car_size - sizer.size
        blocked: set[int] = set()
        candidates = []
        for j in span:
            if taken[j]:
                continue
            p = buf[j]
            if p[FILE_ID] in blocked:
                continue
            blocked.add(p[FILE_ID])
            if p[LENGTH] + MIN_ENTRY_COST <= gap:
                candidates.append(j)
        candidates.sort(key=lambda j: buf[j][LENGTH], reverse=True)
        # One pass, largest first, placing every candidate that still fits; another pass only if a shard was
        # placed (it unblocks its file's next shard; anything else that did not fit will not fit a smaller gap).
        progress = False
        for j in candidates:
            p = buf[j]
            if p[LENGTH] + MIN_ENTRY_COST <= car_size - sizer.size and sizer.try_add(p[CAR_PATH], p[LENGTH], car_size, p[KIND],
                                                                   p[TARGET_LEN]):
                taken[j] = 1
                placed.append(p)
                progress = progress or p[SHARD_INDEX] is not None
        if not progress:
            return placed
