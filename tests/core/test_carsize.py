"""Exact CAR size prediction (whole tree and incremental) against the real writer."""
from __future__ import annotations

import hashlib
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptolemy_tui.core import unixfs
from ptolemy_tui.core.car import SourceEntry, write_car
from ptolemy_tui.core.carsize import file_stats, predict_car_size, section_length
from tests.core.unixfs_cases import hamt_names

C = 262144
SOURCE_SIZE = 1 << 16
_SRC = hashlib.shake_256(b"carsize source").digest(SOURCE_SIZE)

# Tiny shapes so random trees reach 4-level files and HAMT flips (threshold 200: a 6th entry flips) quickly.
TINY = {collapse: unixfs.Params("tiny", collapse, chunk_size=64, max_links=3, hamt_threshold=200)
        for collapse in (False, True)}

component = st.one_of(st.sampled_from([b"a", b"b", b"sub", b"\xff\xfe", b"x y", b"\xf0\x9f\x98\x80"]),
                      st.binary(min_size=1, max_size=8).filter(lambda b: b"/" not in b and b not in (b".", b"..")))
path = st.lists(component, min_size=1, max_size=3).map(b"/".join)
item = st.tuples(path, st.integers(0, 700), st.sampled_from(["file", "file", "file", "dir", "symlink"]))


def _valid(items):
    """Drop items whose path conflicts with an earlier one (file vs directory, duplicates)."""
    files, dirs, out = set(), set(), []
    for p, size, kind in items:
        parts = p.split(b"/")
        prefixes = {b"/".join(parts[:i]) for i in range(1, len(parts))}
        if p in files or p in dirs or prefixes & files or (kind != "dir" and any(
                d == p for d in dirs)):
            continue
        if kind != "dir" and any(f.startswith(p + b"/") for f in files | dirs):
            continue
        files.add(p) if kind != "dir" else dirs.add(p)
        dirs.update(prefixes)
        out.append((p, size, kind))
    return out


def _entries(src_path, items):
    entries = []
    for i, (p, size, kind) in enumerate(items):
        if kind == "file":
            # a distinct offset per entry keeps contents (and so blocks) distinct apart from empty files
            entries.append(SourceEntry(p, src_path, (i * 97) % (SOURCE_SIZE - 800), size))
        elif kind == "symlink":
            entries.append(SourceEntry(p, None, 0, 0, "symlink", b"t" * (size % 200)))
        else:
            entries.append(SourceEntry(p, None, 0, 0, "dir"))
    return entries


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(item, min_size=1, max_size=30), collapse=st.booleans(), wrap=st.booleans())
def test_prediction_matches_the_writer_on_random_trees(tmp_path_factory, items, collapse, wrap):
    src = tmp_path_factory.getbasetemp() / "carsize-src.bin"
    if not src.exists():
        src.write_bytes(_SRC)
    items = _valid(items)
    entries = _entries(str(src), items)
    params = TINY[collapse]
    out = io.BytesIO()
    result = write_car(entries, out, wrap=wrap, _params=params)
    predicted = predict_car_size(entries, profile=params, wrap=wrap)
    # exact without duplicate blocks; with them, exactly the bytes dedup saved
    assert predicted == result.car_size + result.duplicate_bytes == len(out.getvalue()) + result.duplicate_bytes


def test_file_stats_at_the_layout_edges():
    # one chunk: the raw leaf itself
    for n in (0, 1, C - 1, C):
        assert file_stats(n, C, 174, False) == (section_length(n), n)
    kubo = file_stats(174 * C + 1, C, 174, False)
    gocar = file_stats(174 * C + 1, C, 174, True)
    assert kubo[0] - gocar[0] == 89  # kubo's extra one-link node: its block and section framing
    assert file_stats(174 * C, C, 174, False) == file_stats(174 * C, C, 174, True)


def test_prediction_flips_to_a_hamt_exactly_at_the_threshold():
    names = list(hamt_names(1344))
    # the go-unixfsnode vectors: 1343 files flat (541797-byte CAR), 1344 files sharded (576784)
    assert predict_car_size([(b"h/" + n, len(n)) for n in names[:1343]]) == 541797
    assert predict_car_size([(b"h/" + n, len(n)) for n in names]) == 576784


def test_prediction_of_a_million_small_files_is_fast():
    import time

    items = [(b"d%03d/f%06d.jpg" % (i % 500, i), 1000 + i % 5000) for i in range(200_000)]
    t = time.perf_counter()
    size = predict_car_size(items)
    assert time.perf_counter() - t < 10
    assert size > sum(n for _, n in items)


