"""CARv2 output: go-car's v2 header and default MultihashIndexSorted index, byte for byte."""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from ptolemy_tui.core import carread, carv2, commp
from ptolemy_tui.core.car import entries_for_paths, write_car

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cars"
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "carv2"


def make_tree(top: Path) -> Path:
    """The tree behind tests/vectors/carv2/*.car (made with go-car v2.17.0 `car create --version 2`)."""
    (top / "tree" / "sub" / "deeper").mkdir(parents=True)
    (top / "tree" / "empty").mkdir()
    for i, name in enumerate(["a.txt", "sub/b.bin", "sub/deeper/c", "z"]):
        data = b"".join(hashlib.sha256(f"{name}{j}".encode()).digest() for j in range(i * 40 + 1))
        (top / "tree" / name).write_bytes(data)
    (top / "tree" / "same").write_bytes((top / "tree" / "a.txt").read_bytes())  # a duplicate block
    os.symlink("sub/b.bin", top / "tree" / "link")
    return top / "tree"


def test_wrapping_go_cars_sample_is_byte_identical():
    v1 = (FIXTURES / "go-car-sample-v1.car").read_bytes()
    assert carv2.wrap_v1_bytes(v1) == (FIXTURES / "go-car-sample-wrapped-v2.car").read_bytes()


@pytest.mark.parametrize("wrap", [True, False])
def test_write_car_v2_equals_go_car_create_version_2(tmp_path, wrap):
    tree = make_tree(tmp_path)
    want = (VECTORS / f"tree-{'wrap' if wrap else 'nowrap'}.car").read_bytes()
    sink = commp.CommP(deferred_prefix=carv2.PREFIX_LENGTH)
    out = io.BytesIO()
    entries = entries_for_paths([str(tree)])  # unwrapped, the one input directory is the root itself
    result = carv2.write_car_v2(entries, out, profile="go-car", wrap=wrap, sink=sink)
    assert out.getvalue() == want
    assert result.car_size == len(want)
    piece = sink.digest()
    assert piece.piece_cid_v1 == commp.commp_of_file(str(VECTORS / f"tree-{'wrap' if wrap else 'nowrap'}.car")).piece_cid_v1
    # the same blocks as the CARv1, in the same order
    v1 = io.BytesIO()
    write_car(entries, v1, profile="go-car", wrap=wrap)
    assert want[carv2.DATA_OFFSET:carv2.DATA_OFFSET + len(v1.getvalue())] == v1.getvalue()


def test_v2_vectors_verify():
    for path in VECTORS.glob("*.car"):
        report = carread.verify(str(path))
        assert report.version == 2 and report.blocks > 5
