"""Ptolemy against the reference tools themselves: kubo's `ipfs`, go-car's `car` and `stream-commp`.

Kubo profile: root CID = `ipfs add -r --cid-version 1 --raw-leaves --only-hash --offline --hidden`; the CAR
imports with `ipfs dag import` and `ipfs get` gives the tree back byte for byte. go-car profile: the CAR bytes
equal `car create --version 1 [--no-wrap]` wherever go-car is deterministic; for HAMT-sharded directories
(block order from a Go map) the roots and the block sets. Every CAR: `stream-commp` gives Ptolemy's piece CID
and `car verify` passes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ptolemy_tui.cli import main
from ptolemy_tui.core.carread import CarFile
from tests.peers import peers
from ptolemy_tui.core import dagpb
from tests.peers.trees import BIG, tree_digest

SUBTREES = ["sizes", "mixed", "empty", "dup", "links", "names", "hamt-at-threshold", "hamt-over-threshold",
            ".hidden-dir"]
SHARDED = {"hamt-over-threshold", "."}  # go-car's block order inside a HAMT follows a Go map: not stable


def ptolemy_create(capsys, *argv) -> dict:
    code = main(["car", "create", *map(str, argv), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def blocks_of(car: Path) -> tuple[list[str], list[bytes]]:
    with CarFile(car) as f:
        return [str(r) for r in f.roots], [str(s.cid) for s in f.sections(with_data=False)]


def check_car(bins: Path, car: Path, made: dict) -> None:
    """stream-commp agrees on the piece CID and go-car's verify passes, for a CAR Ptolemy wrote."""
    theirs = peers.stream_commp(bins, car)
    assert theirs["commp"] == made["piece_cid"]
    assert (theirs["payload_size"], theirs["padded_piece_size"]) == (made["car_size"], made["padded_piece_size"])
    peers.run([bins / "car", "verify", car])


# ---------------------------------------------------------------- kubo

@pytest.mark.parametrize("sub", SUBTREES + ["."])
def test_kubo_root_cid_equals_ipfs_add(capsys, kubo, tree, sub):
    path = os.path.normpath(tree / sub)
    ours = ptolemy_create(capsys, path, "--profile", "kubo", "--cid-only")
    assert ours["root_cid"] == kubo.add_only_hash(path)


def single(tree: Path, name: str) -> Path:
    return tree.parent / "big" / name if name == BIG else tree / "sizes" / name


@pytest.mark.parametrize("name", ["chunks1-1.bin", "chunks1+0.bin", "chunks1+1.bin", "chunks2+0.bin",
                                  "chunks3+1.bin", BIG])
def test_kubo_root_cid_of_single_files(capsys, kubo, tree, name):
    path = single(tree, name)
    assert ptolemy_create(capsys, path, "--profile", "kubo", "--cid-only")["root_cid"] == kubo.add_only_hash(path)


def test_kubo_car_imports_and_ipfs_get_restores_the_tree(capsys, bins, kubo, tree, work):
    car = work / "kubo-tree.car"
    made = ptolemy_create(capsys, tree, "--profile", "kubo", "-o", car)
    assert made["root_cid"] == kubo.add_only_hash(tree)
    check_car(bins, car, made)
    kubo("dag", "import", "--pin-roots=false", car)
    # car ls --json names every entry exactly (path_hex where the text is escaped)
    code = main(["car", "ls", str(car), "--json"])
    listed = json.loads(capsys.readouterr().out)["entries"]
    exact = {bytes.fromhex(r["path_hex"]) if "path_hex" in r else r["path"].encode() for r in listed}
    assert code == 0 and exact == {b"."} | set(tree_digest(tree))
    out = work / "kubo-get"
    kubo("get", "-o", out, made["root_cid"])
    assert tree_digest(out) == tree_digest(tree)


# ---------------------------------------------------------------- go-car

@pytest.mark.parametrize("sub", SUBTREES + ["."])
def test_go_car_no_wrap_matches_car_create(capsys, bins, tree, work, sub):
    path = os.path.normpath(tree / sub)
    tag = sub.strip(".") or "root"
    theirs, ours = work / f"gocar-{tag}.car", work / f"ptolemy-gocar-{tag}.car"
    peers.run([bins / "car", "create", "--version", "1", "--no-wrap", "-f", theirs, path])
    made = ptolemy_create(capsys, path, "--profile", "go-car", "-o", ours)
    check_car(bins, ours, made)
    with CarFile(ours) as f:
        root_kind = dagpb.decode_unixfs(dagpb.decode_node(f.get(f.roots[0])).data).kind
    if sub.startswith("hamt-"):  # the threshold itself: exactly at it stays flat, one byte over shards
        assert root_kind == (dagpb.UNIXFS_HAMT_SHARD if sub in SHARDED else dagpb.UNIXFS_DIRECTORY)
    if sub in SHARDED:
        their_roots, their_blocks = blocks_of(theirs)
        our_roots, our_blocks = blocks_of(ours)
        assert our_roots == their_roots == [made["root_cid"]]
        assert sorted(our_blocks) == sorted(their_blocks) and len(set(our_blocks)) == len(our_blocks)
    else:
        assert ours.read_bytes() == theirs.read_bytes()


@pytest.mark.parametrize("name", ["chunks1-1.bin", "chunks1+0.bin", "chunks2+1.bin", "chunks3-1.bin", BIG])
def test_go_car_single_files_match_car_create(capsys, bins, tree, work, name):
    path = single(tree, name)
    theirs, ours = work / f"gocar-{name}.car", work / f"ptolemy-gocar-{name}.car"
    peers.run([bins / "car", "create", "--version", "1", "--no-wrap", "-f", theirs, path])
    made = ptolemy_create(capsys, path, "--profile", "go-car", "-o", ours)
    check_car(bins, ours, made)
    assert ours.read_bytes() == theirs.read_bytes()


def test_go_car_wrapped_inputs_keep_command_line_order(capsys, bins, tree, work):
    inputs = [tree / "mixed", tree / "sizes" / "chunks2-1.bin", tree / "dup", tree / "empty", tree / "links"]
    theirs, ours = work / "gocar-wrapped.car", work / "ptolemy-gocar-wrapped.car"
    peers.run([bins / "car", "create", "--version", "1", "-f", theirs, *inputs])
    made = ptolemy_create(capsys, *inputs, "--profile", "go-car", "--wrap", "-o", ours)
    check_car(bins, ours, made)
    assert ours.read_bytes() == theirs.read_bytes()
    one = work / "gocar-wrapped-one.car"
    peers.run([bins / "car", "create", "--version", "1", "-f", one, tree / "names"])
    made = ptolemy_create(capsys, tree / "names", "--profile", "go-car", "--wrap", "-o", work / "p-one.car")
    check_car(bins, work / "p-one.car", made)
    assert (work / "p-one.car").read_bytes() == one.read_bytes()


def test_go_car_extract_restores_a_ptolemy_car(capsys, bins, tree, work):
    car = work / "extract-me.car"
    check_car(bins, car, ptolemy_create(capsys, tree, "--profile", "kubo", "-o", car))
    out = work / "gocar-extract"
    peers.run([bins / "car", "extract", "-f", car, out])
    assert tree_digest(out) == tree_digest(tree)
