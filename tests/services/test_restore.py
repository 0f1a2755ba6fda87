"""Restore from CARs that are not ours (kubo, go-car, CARv2) and every way it refuses: in-process, quick."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ptolemy_tui.core import carread
from ptolemy_tui.core.car import entries_for_paths, write_car
from ptolemy_tui.core.multiformats import CID, CODEC_RAW
from ptolemy_tui.errors import OperationFailed, UsageError
from ptolemy_tui.services import restore
from tests.core.test_carv2 import VECTORS, make_tree

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cars"


def test_kubo_hamt_directory(tmp_path):
    car = FIXTURES / "kubo-TestGatewayHAMTDirectory.car"
    report = restore.restore([str(car)], str(tmp_path / "out"))
    entries, problems = carread.ls(str(car))
    files = sorted(e.path[2:] if e.path.startswith(b"./") else e.path for e in entries if e.kind == "file")
    assert not problems and report.files == len(files) > 900
    restored = sorted(os.fsencode(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")
                      if p.is_file())
    assert restored == sorted(os.fsencode(f.decode()) if isinstance(f, bytes) else f for f in files)


def test_go_car_v2_vector_gives_the_tree_back(tmp_path):
    tree = make_tree(tmp_path / "src")
    report = restore.restore([str(VECTORS / "tree-nowrap.car")], str(tmp_path / "out"), verify_against=str(tree))
    assert report.differences == [] and report.symlinks == 1 and report.compared == 9
    assert (tmp_path / "out" / "empty").is_dir()


def test_missing_blocks_name_the_files_and_write_nothing(tmp_path):
    with pytest.raises(OperationFailed) as info:
        restore.restore([str(FIXTURES / "go-car-simple-unixfs-missing-blocks.car")], str(tmp_path / "out"))
    assert str(info.value).startswith("missing block ") and " for b/" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_corrupt_block_is_refused_and_leaves_no_final_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "one").write_bytes(b"1" * 300_000)
    (src / "two").write_bytes(b"2" * 1000)
    car = tmp_path / "c.car"
    with open(car, "w+b") as out:
        write_car(entries_for_paths([str(src)]), out)
    data = bytearray(car.read_bytes())
    data[200] ^= 0xFF  # inside the first leaf of "one"
    car.write_bytes(bytes(data))
    with pytest.raises(OperationFailed, match="does not match its CID"):
        restore.restore([str(car)], str(tmp_path / "out"))
    assert not (tmp_path / "out" / "one").exists()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".ptolemy-restore-")]


def test_a_file_root_is_written_under_its_cid(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 600_000)
    car = tmp_path / "f.car"
    with open(car, "w+b") as out:
        root = write_car(entries_for_paths([str(tmp_path / "f")]), out).root_cid
    restore.restore([str(car)], str(tmp_path / "out"))
    assert (tmp_path / "out" / str(root)).read_bytes() == b"x" * 600_000


def test_user_mistakes(tmp_path):
    car = str(VECTORS / "tree-wrap.car")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_bytes(b"")
    with pytest.raises(UsageError, match="not empty"):
        restore.restore([car], str(tmp_path / "full"))
    with pytest.raises(UsageError, match="no such CAR"):
        restore.restore([str(tmp_path / "nope.car")], str(tmp_path / "o"))
    with pytest.raises(UsageError, match="no .car files"):
        restore.restore([str(tmp_path / "full")], str(tmp_path / "o"))
    with pytest.raises(UsageError, match="is not a CID"):
        restore.restore([car], str(tmp_path / "o"), root="nonsense")
    with pytest.raises(OperationFailed, match="in none of"):
        restore.restore([car], str(tmp_path / "o"), root=str(CID.sha256(CODEC_RAW, b"absent")))
    with pytest.raises(UsageError, match="pass --root"):
        restore.restore([car, str(FIXTURES / "go-car-simple-unixfs.car")], str(tmp_path / "o"))
    with pytest.raises(OperationFailed, match="not UnixFS|codec 0x71"):
        restore.restore([str(FIXTURES / "go-car-sample-v1.car")], str(tmp_path / "o"))
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")
