"""The dataset DAG and restore, end to end as an operator runs them: a tree with sharded files, a HAMT directory,
symlinks, empty directories and non-UTF-8 names → scan → containerize → build (real workers) → dag → restore
from the CARs into an empty directory → the same tree, byte for byte."""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path


from ptolemy_tui.core import carread
from tests.cli.helpers import run_ptolemy
from tests.worker.buildkit import FAST

SHARD = 1 << 20
ALIGNED = 174 * 262144  # 43.5 MiB: one full 174-link subtree of 256 KiB chunks


def _cli(store_url, *argv, timeout=180):
    return run_ptolemy("--db", store_url, *argv, env=FAST, timeout=timeout)


def make_tree(root: Path) -> Path:
    rng = random.Random(14)
    top = os.fsencode(root)
    files = {
        b"big.bin": rng.randbytes(3 * SHARD + SHARD // 2 + 7),     # 4 shards, the last one short
        b"sub/exact": rng.randbytes(SHARD),                         # exactly shard_size: not split
        b"sub/two.bin": rng.randbytes(SHARD + 1),                   # a 1-byte last shard
        b"zero": b"",
        b"caf\xe9/\xff\xfe.bin": rng.randbytes(3000),
        b"a.txt": b"hello\n",
    }
    for i in range(2300):  # Σ(len(name) + 36) > 256 KiB: a HAMT directory
        files[b"hamt/" + b"f%04d-" % i + b"x" * 80] = b"%d" % i
    for rel, data in files.items():
        path = os.path.join(top, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
    for rel in (b"empty", b"sub/empty2", b"\xe9mpty"):
        os.makedirs(os.path.join(top, rel))
    os.symlink(b"big.bin", os.path.join(top, b"link-to-big"))
    os.symlink(b"../nowhere/\xff", os.path.join(top, b"hamt/dangling"))
    return root


def assert_same_tree(a: Path, b: Path) -> int:
    """Every entry of both trees: kind, bytes, link targets. Returns the number of entries."""
    def entries(top):
        out = {}
        for root, dirs, files in os.walk(os.fsencode(top)):
            for name in dirs + files:
                full = os.path.join(root, name)
                rel = os.path.relpath(full, os.fsencode(top))
                if os.path.islink(full):
                    out[rel] = ("link", os.readlink(full))
                elif os.path.isdir(full):
                    out[rel] = ("dir", None)
                else:
                    with open(full, "rb") as fh:
                        out[rel] = ("file", fh.read())
        return out
    ea, eb = entries(a), entries(b)
    assert sorted(ea) == sorted(eb)
    for key in ea:
        assert ea[key] == eb[key], key
    return len(ea)


def _built_project(store_url, tmp_path, name="ds", *extra):
    src = make_tree(tmp_path / "src")
    staging = tmp_path / "stg"
    for argv in (("project", "create", name, "--target", str(src), "--staging", str(staging), "--car-size", "2MiB",
                  "--shard-size", "1MiB", "--workers", "2", *extra),
                 ("scan", name), ("containerize", name), ("build", name, "--wait")):
        r = _cli(store_url, *argv)
        assert r.code == 0, (argv, r.err)
    return src, staging / name


def test_dag_then_restore_gives_the_tree_back(tmp_path):
    store_url = f"sqlite:///{tmp_path / 'p.db'}"
    src, cars_dir = _built_project(store_url, tmp_path)
    r = _cli(store_url, "dag", "ds", "--json")
    assert r.code == 0, r.err
    dag = json.loads(r.out)
    root = dag["root_cid"]
    assert root.startswith("bafy") and dag["sharded_files"] == 2 and dag["car_version"] == 1
    assert os.path.basename(dag["path"]) == dag["piece_cid"] + ".car"

    # recorded and listed: cars and manifest with a kind column, the root in status and manifest
    cars = json.loads(_cli(store_url, "cars", "ds", "--json").out)["cars"]
    assert [c["kind"] for c in cars] == ["data"] * (len(cars) - 1) + ["dag"]
    assert cars[-1]["payload_cid"] == root and cars[-1]["piece_cid"] == dag["piece_cid"]
    manifest = json.loads(_cli(store_url, "manifest", "ds", "--format", "json").out)
    assert manifest["dataset_root"] == root and manifest["cars"][-1]["kind"] == "dag"
    assert "kind,dataset_root" in _cli(store_url, "manifest", "ds").out.splitlines()[0]
    assert json.loads(_cli(store_url, "status", "ds", "--json").out)["dataset_root"] == root
    files = json.loads(_cli(store_url, "files", "ds", "--json").out)["files"]
    shards = [f for f in files if f["source"] == "big.bin"]
    assert len(shards) == 4 and len({f["whole_cid"] for f in shards}) == 1 and shards[0]["whole_cid"].startswith("bafy")
    assert all(f["whole_cid"] is None for f in files if f["shard_index"] is None)

    # the DAG CAR holds no leaves and verifies as a partial CAR (its files are in the data CARs)
    report = carread.verify(dag["path"], partial=True)
    assert str(report.roots[0]) == root and report.external > 0
    r = _cli(store_url, "car", "verify", dag["path"], "--partial", "--json")
    assert r.code == 0 and json.loads(r.out)["external_links"] == report.external
    assert _cli(store_url, "car", "verify", dag["path"]).code == 1

    # restore from the staging directory (data CARs + the DAG CAR) into an empty directory
    r = _cli(store_url, "restore", "--to", str(tmp_path / "r1"), str(cars_dir), "--verify-against", str(src),
             "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["root"] == root and doc["root_from"] == "the dataset DAG CAR" and doc["differences"] == []
    assert assert_same_tree(src, tmp_path / "r1") > 2300

    # the CARs in any order
    paths = sorted(str(p) for p in cars_dir.glob("*.car"))
    random.Random(3).shuffle(paths)
    r = _cli(store_url, "restore", "--to", str(tmp_path / "r2"), *paths)
    assert r.code == 0, r.err
    assert_same_tree(src, tmp_path / "r2")

    # one CAR missing: one line naming the file and the CID, exit 1, nothing written
    victim = next(f for f in files if f["path"] == "big.bin.ptolemy2")
    rest = [p for p in paths if os.path.basename(p) != victim["car"]]
    r = _cli(store_url, "restore", "--to", str(tmp_path / "r3"), *rest)
    assert r.code == 1
    line = r.err.strip()
    assert "\n" not in line and line.startswith("ptolemy: missing block ") and "big.bin" in line
    assert not (tmp_path / "r3").exists() or not os.listdir(tmp_path / "r3")

    # differences are reported against a tree that differs
    other = tmp_path / "other"
    shutil.copytree(src, other, symlinks=True)
    (other / "a.txt").write_bytes(b"hullo\n")
    r = _cli(store_url, "restore", "--to", str(tmp_path / "r4"), str(cars_dir), "--verify-against", str(other))
    assert r.code == 1 and "different bytes: a.txt" in r.out

    # a rescan and repack after a change give a new root; the old one stays recorded
    (src / "sub" / "new.txt").write_bytes(b"new file\n")
    for argv in (("scan", "ds"), ("containerize", "ds"), ("build", "ds", "--wait"), ("dag", "ds", "--json")):
        r = _cli(store_url, *argv)
        assert r.code == 0, (argv, r.err)
    new_root = json.loads(r.out)["root_cid"]
    assert new_root != root and json.loads(r.out)["previous_root"] == root
    listed = json.loads(_cli(store_url, "dag", "ds", "--list", "--json").out)["roots"]
    assert [x["root_cid"] for x in listed] == [new_root, root]
    r = _cli(store_url, "restore", "--to", str(tmp_path / "r5"), str(cars_dir))
    assert r.code == 2 and "--root" in r.err  # two DAG CARs now: the operator picks one
    r = _cli(store_url, "restore", "--to", str(tmp_path / "r5"), "--root", new_root, str(cars_dir))
    assert r.code == 0, r.err
    assert_same_tree(src, tmp_path / "r5")


def test_carv2_project(tmp_path):
    """--car-version 2: every CAR (data and DAG) is CARv2, verifies, its piece CID is of the whole file."""
    store_url = f"sqlite:///{tmp_path / 'p.db'}"
    src, cars_dir = _built_project(store_url, tmp_path, "v2", "--car-version", "2")
    r = _cli(store_url, "dag", "v2", "--json")
    assert r.code == 0, r.err
    dag = json.loads(r.out)
    assert dag["car_version"] == 2
    r = _cli(store_url, "verify", "v2")
    assert r.code == 0, r.out + r.err  # payload CID and piece CID (of the whole file) of every data CAR
    for car in json.loads(_cli(store_url, "cars", "v2", "--json").out)["cars"]:
        with open(car["path"], "rb") as fh:
            assert fh.read(11) == bytes.fromhex("0aa16776657273696f6e02")
        report = carread.verify(car["path"], partial=car["kind"] == "dag")
        assert report.version == 2 and str(report.roots[0]) == car["payload_cid"]
    r = _cli(store_url, "restore", "--to", str(tmp_path / "out"), str(cars_dir))
    assert r.code == 0, r.err
    assert_same_tree(src, tmp_path / "out")


def test_aligned_shards_give_kubos_whole_file_cid(tmp_path):
    """shard_size = 174 × 256 KiB: a sharded file's whole-file CID is `car create --profile kubo` of the file."""
    store_url = f"sqlite:///{tmp_path / 'p.db'}"
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(5)
    with open(src / "big.bin", "wb") as fh:  # two full shards and a 100-byte one (kubo wraps it to full height)
        for _ in range(2):
            fh.write(rng.randbytes(ALIGNED))
        fh.write(rng.randbytes(100))
    (src / "small").write_bytes(b"s")
    for argv in (("project", "create", "al", "--target", str(src), "--staging", str(tmp_path / "stg"),
                  "--car-size", "64MiB", "--shard-size", f"{ALIGNED}B"),
                 ("scan", "al"), ("containerize", "al"), ("build", "al", "--wait"), ("dag", "al")):
        r = _cli(store_url, *argv)
        assert r.code == 0, (argv, r.err)
    files = json.loads(_cli(store_url, "files", "al", "--json").out)["files"]
    whole = {f["whole_cid"] for f in files if f["source"] == "big.bin"}
    r = _cli(store_url, "car", "create", str(src / "big.bin"), "-o", str(tmp_path / "whole.car"), "--profile",
             "kubo", "--json")
    assert whole == {json.loads(r.out)["root_cid"]}
