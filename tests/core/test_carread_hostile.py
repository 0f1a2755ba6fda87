"""Small crafted CARs that used to take minutes, gigabytes or a hang, or pass as complete when they are not."""
from __future__ import annotations

import os
import resource
import threading

import pytest

from ptolemy_tui.core import carread
from ptolemy_tui.core.car import car_header
from ptolemy_tui.core.multiformats import CID, encode_varint
from ptolemy_tui.core.unixfs import directory_block, pb_cid, raw_cid


def _car(path, root: bytes, blocks: list[tuple[bytes, bytes]]):
    with open(path, "wb") as fh:
        fh.write(car_header(root))
        for cid, data in blocks:
            fh.write(encode_varint(len(cid) + len(data)) + cid + data)
    return path


def _diamond(levels: int):
    """levels directories, each linking twice ("a" and "b") to the next: 2^levels paths, levels + 1 blocks."""
    leaf = b"leaf"
    below = raw_cid(leaf)
    blocks = [(below, leaf)]
    for _ in range(levels):
        block = directory_block([(b"a", below, 10), (b"b", below, 10)])
        below = pb_cid(block)
        blocks.append((below, block))
    return below, blocks


def _chain(depth: int):
    leaf = b"x"
    below = raw_cid(leaf)
    blocks = [(below, leaf)]
    block = directory_block([(b"f", below, 1)])
    for _ in range(depth):
        below = pb_cid(block)
        blocks.append((below, block))
        block = directory_block([(b"d", below, 1)])
    return below, blocks


def test_a_64_level_diamond_is_listed_once_per_block(tmp_path):
    root, blocks = _diamond(64)
    path = _car(tmp_path / "diamond.car", root, blocks)
    entries, problems = carread.ls(path)
    assert problems == []
    # each directory is expanded once: its two links are listed, the second one as a repeat
    assert len(entries) == 1 + 2 * 64
    assert sum(e.kind == "repeat" for e in entries) == 63
    assert carread.verify(path).reachable == 65


def test_a_chain_100000_directories_deep_is_bounded(tmp_path):
    root, blocks = _chain(100_000)
    path = _car(tmp_path / "chain.car", root, blocks)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    problems: list[str] = []
    count = 0
    longest = 0
    for entry in carread.iter_ls(path, problems):
        count += 1
        longest = max(longest, len(entry.path))
    assert longest <= carread.MAX_LS_PATH + 2
    assert count < 3000 and len(problems) == 1 and "longer than 4096 bytes" in problems[0]
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024, f"{grown_kib} KiB"
    assert carread.verify(path).reachable == 100_001  # verify walks all of it, iteratively


def test_car_ls_streams_its_output(tmp_path, capsys):
    """The first entries are out before the walk ends: a consumer sees them as they come."""
    from ptolemy_tui.cli import main

    root, blocks = _diamond(8)
    path = _car(tmp_path / "d.car", root, blocks)
    seen = []
    gen = carread.iter_ls(path, [])
    seen.append(next(gen))
    assert seen[0].path == b"." and seen[0].kind == "directory"
    gen.close()
    assert main(["car", "ls", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 2 * 8
    assert main(["car", "ls", str(path), "--json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert len(doc["entries"]) == 17 and doc["problems"] == []


def test_a_dag_pb_root_under_a_raw_cid_is_not_complete(tmp_path):
    missing_child = raw_cid(b"never stored")
    node = directory_block([(b"child", missing_child, 12)])
    raw_root = raw_cid(node)  # the dag-pb bytes, named as raw
    path = _car(tmp_path / "rawroot.car", raw_root, [(raw_root, node)])
    with pytest.raises(carread.CarFormatError, match="raw CID but its block is a dag-pb node"):
        carread.verify(path)
    _, problems = carread.ls(path)
    assert problems and "raw CID" in problems[0]


def test_a_plain_raw_root_still_verifies(tmp_path):
    data = b"just bytes"
    cid = raw_cid(data)
    path = _car(tmp_path / "raw.car", cid, [(cid, data)])
    assert carread.verify(path).reachable == 1
    assert CID.decode(cid)[0].codec == 0x55


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path, capsys):
    from ptolemy_tui.cli import main

    fifo = tmp_path / "pipe.car"
    os.mkfifo(fifo)
    result = {}

    def run():
        try:
            carread.verify(fifo)
        except carread.CarFormatError as exc:
            result["error"] = str(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "verify blocked on a FIFO"
    assert "not a regular file" in result["error"]
    for action in ("verify", "ls", "root"):
        assert main(["car", action, str(fifo)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a regular file" in err
