"""Packing files into containers whose CAR stays ≤ car_size (pure: no DB, no I/O).

- A regular file larger than shard_size becomes shards of shard_size (the last one the remainder); shard N
  (counted from 0) of `a/b.bin` is `a/b.bin.ptolemy<N>` in its CAR. Files ≤ shard_size are never split.
- Symlinks are packed as UnixFS symlink entries (length 0), so the tree loses nothing.
- Pieces are taken in path order (the caller sorts them so that a directory's files stay together). When the
  next piece does not fit, a bounded best-fit look-ahead over the next LOOKAHEAD pieces fills the gap with the
  largest pieces that still fit; a file's shards are never reordered (a skipped shard defers the rest of its
  file). Then the container is closed and the skipped pieces open the next one.
- The CAR length comes from one name, `car_size_model()`: the incremental ContainerSizer (byte-exact for
  plain directories, a strict upper bound for HAMT directories). A container holding a HAMT directory gets its
  final figure from `exact_car_size()` (core.carsize.predict_car_size, which builds the HAMT tries).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from ptolemy_tui.core.carmodel import ContainerSizer
from ptolemy_tui.core.carsize import predict_car_size
from ptolemy_tui.core.unixfs import SourceEntry

LOOKAHEAD = 512  # pieces examined to fill a container's gap; bounds the work per container
SHARD_SUFFIX = b".ptolemy"


class PackingError(ValueError):
    """A piece that cannot fit even an empty container (shard_size too close to car_size)."""


@dataclass(slots=True)
class Piece:
    """One container item to be: a whole file, a shard of one, or a symlink."""

    file_id: int
    car_path: bytes
    offset: int
    length: int
    shard_index: int | None = None
    kind: str = "file"  # "file" or "symlink"
    target_len: int = 0  # symlink target length (its UnixFS node carries it)


@dataclass
class PackedContainer:
    pieces: list[Piece] = field(default_factory=list)
    predicted_size: int = 0
    data_bytes: int = 0
    shard_count: int = 0
    exact: bool = True  # False: predicted_size is the sizer's upper bound (a HAMT and no exact predictor)


def shard_name(path: bytes, index: int) -> bytes:
    return path + SHARD_SUFFIX + str(index).encode()


def pieces_of(file_id: int, path: bytes, size: int, shard_size: int) -> list[Piece]:
    """The pieces of one regular file: itself when ≤ shard_size, else shards of shard_size."""
    if size <= shard_size:
        return [Piece(file_id, path, 0, size)]
    count = -(-size // shard_size)
    return [Piece(file_id, shard_name(path, n), n * shard_size, min(shard_size, size - n * shard_size), n)
            for n in range(count)]


def car_size_model(profile: str = "kubo") -> ContainerSizer:
    """The one place the packer gets its CAR-length model from."""
    return ContainerSizer(profile)


def source_entries(pieces: Iterable[Piece]) -> list[SourceEntry]:
    """The pieces as the formats code sees them (the build writes exactly these, unwrapped)."""
    return [SourceEntry(p.car_path, None, p.offset, p.length, p.kind, b"x" * p.target_len if p.kind == "symlink" else b"")
            for p in pieces]


def exact_car_size(pieces: list[Piece], profile: str = "kubo") -> tuple[int, bool]:
    """(CAR length, True): the formats issue's predict_car_size, byte-exact with the build's write_car."""
    return predict_car_size(source_entries(pieces), profile=profile, wrap=False), True


def pack(pieces: Iterable[Piece], car_size: int, *, profile: str = "kubo", lookahead: int = LOOKAHEAD,
         exact: Callable[[list[Piece], str], tuple[int, bool]] = exact_car_size) -> Iterator[PackedContainer]:
    """Yield containers, in order, holding every piece exactly once. Raises PackingError for a piece that fits
    no container."""
    source = iter(pieces)
    window: deque[Piece] = deque()  # pieces read but not yet placed, in path order
    exhausted = False

    def refill() -> None:
        nonlocal exhausted
        while not exhausted and len(window) <= lookahead:
            nxt = next(source, None)
            if nxt is None:
                exhausted = True
            else:
                window.append(nxt)

    refill()
    while window:
        sizer = car_size_model(profile)
        box = PackedContainer()
        # In order while pieces fit.
        while True:
            if not window:
                refill()
                if not window:
                    break
            piece = window[0]
            if not sizer.try_add(piece.car_path, piece.length, car_size, piece.kind, piece.target_len):
                break
            window.popleft()
            box.pieces.append(piece)
            if not exhausted and len(window) < 2:
                refill()
        if not box.pieces:
            piece = window[0]
            raise PackingError(
                f"{piece.car_path.decode('utf-8', 'backslashreplace')} ({piece.length} bytes) does not fit a "
                f"{car_size}-byte CAR with its UnixFS overhead: lower the shard size below the CAR size")
        # Best-fit look-ahead: fill the gap with the largest pieces that still fit. A file whose earlier piece
        # stays behind keeps all its later pieces behind too, so shards stay in order.
        refill()
        while window:
            gap = car_size - sizer.size
            blocked: set[int] = set()
            candidates = []
            for i, cand in enumerate(window):
                if cand.file_id in blocked:
                    continue
                blocked.add(cand.file_id)
                if cand.length < gap:  # a piece also costs its CID and framing: never fits an equal gap
                    candidates.append(i)
            candidates.sort(key=lambda i: window[i].length, reverse=True)
            for i in candidates:
                cand = window[i]
                if sizer.try_add(cand.car_path, cand.length, car_size, cand.kind, cand.target_len):
                    del window[i]
                    box.pieces.append(cand)
                    break
            else:
                break
        box.data_bytes = sum(p.length for p in box.pieces)
        box.shard_count = sum(1 for p in box.pieces if p.shard_index is not None)
        if sizer.has_hamt:
            box.predicted_size, box.exact = exact(box.pieces, profile)
        else:
            box.predicted_size, box.exact = sizer.car_size, True
        if box.predicted_size > car_size:  # the sizer is an upper bound: this cannot happen
            raise AssertionError(f"container over its CAR size: {box.predicted_size} > {car_size}")
        yield box
