"""Packing invariants, property-tested on random trees and sizes (pure: no DB).

Every byte of every regular file lands in exactly one piece; no container exceeds car_size; the incremental
size model agrees byte for byte with the formats issue's predict_car_size; a file's pieces stay in order.
"""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptolemy_tui.core import carmodel, packing
from ptolemy_tui.core.carmodel import ONE_NODE_MAX, ContainerSizer, file_dag, one_node_file
from ptolemy_tui.core.carsize import file_stats, predict_car_size
from ptolemy_tui.core.packing import (CONTAINER_WRAP, PackingError, Piece, exact_car_size, pack, pieces_of, shard_name,
                                      source_entries)

KiB, MiB = 1 << 10, 1 << 20

names = st.sampled_from([b"a", b"b", b"dir", b"\xff\xfe", b"caf\xc3\xa9", b"x" * 120, b"y" * 200, b"s p a c e"])


@st.composite
def trees(draw):
    """(pieces-to-be: list of (file_id, path, size, kind, target_len)), car_size, shard_size)."""
    car_size = draw(st.integers(256 * KiB, 4 * MiB))
    shard_size = draw(st.integers(16 * KiB, car_size // 2))
    count = draw(st.integers(1, 40))
    seen = set()
    files = []
    for fid in range(count):
        parts = draw(st.lists(names, max_size=3))
        leaf = b"f%d" % fid + draw(st.sampled_from([b"", b".bin", b"-\x80"]))
        path = b"/".join(parts + [leaf])
        if any(path.startswith(p + b"/") or p.startswith(path + b"/") for p in seen):
            continue
        seen.add(path)
        kind = draw(st.sampled_from(["file"] * 6 + ["symlink"]))
        if kind == "symlink":
            files.append((fid, path, 0, "symlink", draw(st.integers(1, 300))))
            continue
        size = draw(st.one_of(
            st.sampled_from([0, 1, shard_size, shard_size + 1, car_size, car_size + 1, 262144, 262145]),
            st.integers(0, 3 * car_size),
            st.integers(0, 4096),
        ))
        files.append((fid, path, size, "file", 0))
    files.sort(key=lambda f: f[1])
    return files, car_size, shard_size


def _pieces(files, shard_size):
    out = []
    for fid, path, size, kind, tlen in files:
        if kind == "symlink":
            out.append(Piece(fid, path, 0, 0, None, "symlink", tlen))
        else:
            out.extend(pieces_of(fid, path, size, shard_size))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_every_byte_once_no_overflow_exact_size_in_order(tree):
    files, car_size, shard_size = tree
    boxes = list(pack(_pieces(files, shard_size), car_size, lookahead=8))
    seen: dict[int, list[tuple[int, int, int]]] = {}
    for n, box in enumerate(boxes):
        assert box.pieces, "no empty container"
        assert box.predicted_size <= car_size
        assert box.predicted_size == predict_car_size(source_entries(box.pieces), wrap=CONTAINER_WRAP)
        assert box.data_bytes == sum(p.length for p in box.pieces)
        for p in box.pieces:
            seen.setdefault(p.file_id, []).append((n, p.offset, p.length))
    for fid, path, size, kind, _ in files:
        got = seen.get(fid, [])
        if kind == "symlink":
            assert got == [(got[0][0], 0, 0)]
            continue
        assert [(o, ln) for _, o, ln in got] == sorted((o, ln) for _, o, ln in got), "pieces in order"
        assert [n for n, _, _ in got] == sorted(n for n, _, _ in got), "a file's pieces in container order"
        pos = 0
        for _, offset, length in got:
            assert offset == pos, "no gap, no overlap"
            pos += length
        assert pos == size, "every byte packed"
        if size <= shard_size:
            assert len(got) == 1, "a file ≤ shard_size is never split"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 3 * MiB)), min_size=1, max_size=60),
       st.sampled_from(["kubo", "go-car"]), st.booleans())
def test_incremental_model_matches_predict_car_size(spec, profile, wrap):
    """Any insertion order (including returning to an earlier directory) keeps the model exact."""
    sizer = ContainerSizer(profile, wrap)
    entries = []
    for n, (d1, d2, size) in enumerate(spec):
        path = b"/".join([b"d%d" % d1] * (d1 > 0) + [b"e%d" % d2] * (d2 > 0) + [b"f%d" % n])
        assert sizer.try_add(path, size, 1 << 62)
        entries.append((path, size))
        assert sizer.car_size == predict_car_size(entries, profile=profile, wrap=wrap)


@pytest.mark.parametrize("length", [0, 1, 262144, 262145, 174 * 262144, 174 * 262144 + 1, 174 * 262144 + 262144,
                                    174 * 174 * 262144 + 1, 5 * (1 << 30) + 7])
@pytest.mark.parametrize("profile", ["kubo", "go-car"])
def test_file_dag_matches_formats(length, profile):
    assert file_dag(length, profile) == file_stats(length, 262144, 174, profile == "go-car")


def test_the_one_node_closed_form_at_every_leaf_count_and_varint_edge():
    """try_add sizes files of up to 174 chunks with one_node_file, not through file_dag: at every leaf count,
    and where the last leaf's and the file's varints change length, it is the formats code's figure."""
    lengths = {k * 262144 + d for k in range(1, 175) for d in (-1, 0, 1)}
    lengths |= {262144 * k + e + d for k in (1, 7, 173) for e in (127, 16383) for d in (0, 1)}
    lengths |= {(1 << b) + d for b in (21, 28) for d in (-1, 0, 1)}
    for length in sorted(n for n in lengths if 262144 < n <= ONE_NODE_MAX):
        assert one_node_file(length) == file_stats(length, 262144, 174, False) == file_stats(length, 262144, 174, True)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 200 * 262144), st.sampled_from(["kubo", "go-car"]))
def test_file_dag_closed_form_matches_formats(length, profile):
    assert file_dag(length, profile) == file_stats(length, 262144, 174, profile == "go-car")


def test_shard_boundaries_and_names():
    s = 1 * MiB
    assert [(p.car_path, p.offset, p.length, p.shard_index) for p in pieces_of(1, b"a/b.bin", s, s)] == [
        (b"a/b.bin", 0, s, None)]
    over = pieces_of(1, b"a/b.bin", s + 1, s)
    assert [(p.car_path, p.offset, p.length, p.shard_index) for p in over] == [
        (b"a/b.bin.ptolemy0", 0, s, 0), (b"a/b.bin.ptolemy1", s, 1, 1)]
    assert shard_name(b"x", 12) == b"x.ptolemy12"
    assert [(p.offset, p.length) for p in pieces_of(2, b"e", 0, s)] == [(0, 0)]


def test_file_larger_than_car_size_spans_containers():
    car, shard = 4 * MiB, 1 * MiB
    pieces = pieces_of(7, b"big.bin", 10 * MiB + 3, shard)
    boxes = list(pack(pieces, car))
    assert [len(b.pieces) for b in boxes] == [3, 3, 3, 2]  # four 1 MiB shards plus UnixFS overhead exceed 4 MiB
    assert [p.shard_index for b in boxes for p in b.pieces] == list(range(11))
    assert all(b.predicted_size <= car for b in boxes)


def test_piece_that_fits_no_container_is_an_error_not_a_loss():
    with pytest.raises(PackingError, match="lower the shard size"):
        list(pack(pieces_of(1, b"huge", 4 * MiB, 4 * MiB), 4 * MiB))


def test_empty_files_and_symlinks_are_packed():
    pieces = [Piece(1, b"e0", 0, 0), Piece(2, b"d/e1", 0, 0), Piece(3, b"d/link", 0, 0, None, "symlink", 10)]
    (box,) = list(pack(pieces, 1 * MiB))
    assert [p.file_id for p in box.pieces] == [1, 2, 3]
    assert box.predicted_size == predict_car_size(source_entries(pieces), wrap=CONTAINER_WRAP)


def test_lookahead_fills_the_gap_with_later_small_files():
    car = 4 * MiB
    pieces = [Piece(1, b"a/big1", 0, 3 * MiB), Piece(2, b"a/big2", 0, 3 * MiB)]
    pieces += [Piece(10 + n, b"b/small%03d" % n, 0, 8 * KiB) for n in range(200)]
    boxes = list(pack(pieces, car))
    first = boxes[0]
    assert first.pieces[0].file_id == 1 and any(p.file_id >= 10 for p in first.pieces)
    assert first.predicted_size > car - 16 * KiB, "the gap after big1 is filled from the look-ahead"


def test_mean_fill_at_least_99_percent_when_shards_are_an_eighth():
    rng = random.Random(5)
    car = 64 * MiB
    shard = car // 8
    pieces = []
    for n in range(3000):
        size = rng.choice([rng.randint(0, 64 * KiB), rng.randint(0, 4 * MiB), rng.randint(0, 20 * MiB)])
        pieces.extend(pieces_of(n, b"d%02d/f%05d" % (n // 100, n), size, shard))
    boxes = list(pack(pieces, car))
    fills = [b.predicted_size / car for b in boxes[:-1]]
    assert len(fills) > 5
    assert sum(fills) / len(fills) >= 0.99


def test_hamt_directory_is_bounded_then_exact(monkeypatch):
    """A directory past the HAMT threshold: the sizer stays an upper bound, the container's final size is exact."""
    pieces = [Piece(n, b"big/%06d-%s" % (n, b"n" * 40), 0, 100) for n in range(6000)]
    sizer = ContainerSizer()
    for p in pieces:
        assert sizer.try_add(p.car_path, p.length, 1 << 62)
    exact = predict_car_size(source_entries(pieces), wrap=CONTAINER_WRAP)
    assert sizer.has_hamt and sizer.car_size >= exact
    assert sizer.car_size - exact < 6000 * carmodel.HAMT_ENTRY_SLACK
    car = 4 * MiB
    boxes = list(pack(pieces, car))
    for box in boxes:
        assert box.exact and box.predicted_size <= car
        assert box.predicted_size == predict_car_size(source_entries(box.pieces), wrap=CONTAINER_WRAP)
    assert sum(len(b.pieces) for b in boxes) == 6000
    assert exact_car_size(pieces)[0] == exact


@pytest.mark.parametrize("sizes, car_size", [
    ([0, 1, 100, 4000, 300_000, 2 * MiB], 8 * MiB),  # many small containers
    ([0, 1, 100, 4000], 64 * MiB),  # containers of more items than the window keeps
])
def test_streaming_pack_reads_as_it_goes_and_places_the_same_pieces(sizes, car_size):
    """pack() over an iterator with on_pieces: every piece once, the same containers as the list form, and the
    source never read further ahead than the look-ahead window, one read chunk and one hand-over."""
    rng = random.Random(11)
    files = [(n + 1, f"d{n // 700:03d}/f{n:06d}".encode(), rng.choice(sizes), "file", 0)
             for n in range(40_000)]  # past _Window.COMPACT_AT: the window drops what it placed and reads on
    pieces = _pieces(files, 1 * MiB)
    listed = list(pack(pieces, car_size, lookahead=64))

    state = {"read": 0, "placed": 0, "worst": 0}
    streamed_items: list = []

    def source():
        for p in pieces:
            state["read"] += 1
            state["worst"] = max(state["worst"], state["read"] - state["placed"])
            yield p

    def on_pieces(placed):
        state["placed"] += len(placed)
        streamed_items.extend(placed)

    boxes = list(pack(source(), car_size, lookahead=64, on_pieces=on_pieces))
    assert [b.item_count for b in boxes] == [len(b.pieces) for b in listed]
    assert [b.predicted_size for b in boxes] == [b.predicted_size for b in listed]
    assert [b.data_bytes for b in boxes] == [b.data_bytes for b in listed]
    assert sorted(streamed_items) == sorted(pieces), "every piece exactly once"
    assert streamed_items == [p for b in listed for p in b.pieces]
    assert all(not b.pieces for b in boxes)
    assert state["worst"] <= 64 + 1024 + packing.HANDOVER + 1
