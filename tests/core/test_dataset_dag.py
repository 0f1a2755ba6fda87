"""The dataset DAG: whole files over their shards' roots, byte-equal to the profile's own DAG when aligned."""
from __future__ import annotations

import io
import os
import random

import pytest

from ptolemy_tui.core import carread, dataset_dag, unixfs
from ptolemy_tui.core.car import write_car
from ptolemy_tui.core.dataset_dag import DatasetEntry, Piece
from ptolemy_tui.core.unixfs import Params, SourceEntry

TINY = {"kubo": Params("kubo", collapse_single_child=False, chunk_size=4, max_links=3),
        "go-car": Params("go-car", collapse_single_child=True, chunk_size=4, max_links=3)}


def _car_of(path, offset, length, params, blocks=None):
    """The root CID of a byte range as the CAR writer builds it (its DagWriter, without the CAR file)."""
    def put(cid, block):
        if blocks is not None:
            blocks[cid] = bytes(block)

    def read(entry, chunk_size):
        with open(entry.source, "rb") as f:
            f.seek(entry.offset)
            data = f.read(entry.length)
        if data:
            yield memoryview(data)

    cid, _ = unixfs.DagWriter(put, read, params).build(SourceEntry(b"f", path, offset, length))
    return cid


def _read_file(cid: bytes, blocks: dict) -> bytes:
    from ptolemy_tui.core import dagpb
    from ptolemy_tui.core.multiformats import CID, CODEC_RAW

    c = CID.decode(cid)[0]
    data = blocks[cid]
    if c.codec == CODEC_RAW:
        return data
    node = dagpb.decode_node(data)
    return b"".join(_read_file(link.cid.to_bytes(), blocks) for link in node.links)


@pytest.mark.parametrize("profile", ["kubo", "go-car"])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_aligned_whole_file_equals_the_profiles_own_cid(tmp_path, profile, k):
    params = TINY[profile]
    shard_size = params.chunk_size * params.max_links ** k
    assert dataset_dag.aligned_height(shard_size, params) == k
    rng = random.Random(k)
    # sizes around every edge: one chunk over, a lone trailing chunk at each level, short last shards
    sizes = sorted({shard_size + 1, shard_size * 2, shard_size * 2 + 1, shard_size * 3 + 5,
                    shard_size * 4 - 1, shard_size * 9 + 1, shard_size * 10 + 3, 4 * 27 * 3 + 1, 4 * 27 * 4})
    for size in sizes:
        if size <= shard_size:
            continue
        path = tmp_path / f"f{size}"
        path.write_bytes(rng.randbytes(size))
        blocks: dict[bytes, bytes] = {}
        pieces = [Piece(_car_of(str(path), off, min(shard_size, size - off), params, blocks), off,
                        min(shard_size, size - off)) for off in range(0, size, shard_size)]
        new: dict[bytes, bytes] = {}
        cid, tsize = dataset_dag.whole_file(lambda c, b: new.__setitem__(c, bytes(b)), params, pieces, shard_size)
        assert cid == _car_of(str(path), 0, size, params), (profile, k, size)
        assert _read_file(cid, {**blocks, **new}) == path.read_bytes()


@pytest.mark.parametrize("shard_size", [8, 20, 36 + 4])
def test_unaligned_shards_still_read_back_whole(tmp_path, shard_size):
    params = TINY["kubo"]
    assert dataset_dag.aligned_height(shard_size, params) is None
    data = random.Random(1).randbytes(shard_size * 13 + 3)
    path = tmp_path / "f"
    path.write_bytes(data)
    blocks: dict[bytes, bytes] = {}
    pieces = [Piece(_car_of(str(path), off, min(shard_size, len(data) - off), params, blocks), off,
                    min(shard_size, len(data) - off)) for off in range(0, len(data), shard_size)]
    new: dict[bytes, bytes] = {}
    cid, _ = dataset_dag.whole_file(lambda c, b: new.__setitem__(c, bytes(b)), params, pieces, shard_size)
    assert _read_file(cid, {**blocks, **new}) == data
    assert all(len(node_links) <= 3 for node_links in
               [unixfs.dagpb.decode_node(b).links for b in new.values()])


def test_real_aligned_sizes():
    kubo = unixfs.get_params("kubo")
    assert dataset_dag.aligned_sizes(kubo, 1 << 20, int(63.5 * 2 ** 30)) == [174 * 262144, 174 * 174 * 262144]
    assert dataset_dag.aligned_height(1 << 30, kubo) is None
    assert dataset_dag.aligned_height(262144, kubo) == 0


def test_dataset_of_unsharded_files_equals_the_car_of_the_tree(tmp_path):
    """With no shards, the dataset root is exactly the root `car create` gives the same tree (HAMT included)."""
    params = Params("kubo", collapse_single_child=False, chunk_size=4, max_links=3, hamt_threshold=200)
    rng = random.Random(2)
    (tmp_path / "t" / "big").mkdir(parents=True)
    (tmp_path / "t" / "empty").mkdir()
    for i in range(12):  # 12 × (len ≥ 5 + 36) > 200: a HAMT directory
        (tmp_path / "t" / "big" / f"file{i:02d}").write_bytes(rng.randbytes(rng.randrange(0, 30)))
    (tmp_path / "t" / b"caf\xe9".decode("utf-8", "surrogateescape")).write_bytes(b"latin-1 name")
    os.symlink("big/file01", tmp_path / "t" / "link")
    entries = []
    for root, dirs, files in os.walk(os.fsencode(tmp_path / "t")):
        rel = os.path.relpath(root, os.fsencode(tmp_path / "t"))
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            full = os.path.join(root, name)
            p = name if rel == b"." else rel + b"/" + name
            if os.path.islink(full):
                target = os.readlink(full)
                cid = unixfs.pb_cid(unixfs.symlink_block(target))
                entries.append(DatasetEntry(p, "symlink", 0, (Piece(cid, 0, 0),), len(target)))
            else:
                size = os.path.getsize(full)
                entries.append(DatasetEntry(p, "file", size, (Piece(_car_of(full, 0, size, params), 0, size),)))
        if not dirs and not files:
            entries.append(DatasetEntry(rel, "dir"))
    out = io.BytesIO()
    car, dag = dataset_dag.write_dataset_car(entries, out, profile=params, shard_size=1 << 20)
    want = write_car(unixfs_entries(tmp_path / "t"), io.BytesIO(), _params=params, wrap=False)
    assert car.root_cid == want.root_cid
    assert len(out.getvalue()) == car.car_size
    assert not dag.whole_files


def unixfs_entries(top):
    from ptolemy_tui.core.car import entries_for_paths

    # entries_for_paths names everything under the input's base name; drop that level
    base = os.path.basename(os.fsencode(top))
    out = []
    for e in entries_for_paths([str(top)]):
        if e.dag_path == base:
            continue
        out.append(SourceEntry(e.dag_path[len(base) + 1:], e.source, e.offset, e.length, e.kind, e.link_target))
    return out


VECTOR = os.path.join(os.path.dirname(__file__), "..", "vectors", "dataset_dag", "dataset.car")


def vector_entries() -> list[DatasetEntry]:
    """A fixed dataset: whole files, a file in 3 unaligned shards, one in 3 aligned shards (43.5 MiB each),
    a symlink, empty directories and a non-UTF-8 name; the CIDs stand for what container CARs recorded."""
    from ptolemy_tui.core.multiformats import CID, CODEC_DAG_PB, CODEC_RAW

    def cid(codec, tag):
        return CID.sha256(codec, tag.encode()).to_bytes()

    mib = 1 << 20
    aligned = 174 * 262144
    return [
        DatasetEntry(b"a.txt", "file", 6, (Piece(cid(CODEC_RAW, "a"), 0, 6),)),
        DatasetEntry(b"docs/big.bin", "file", 2 * mib + 5,
                     tuple(Piece(cid(CODEC_DAG_PB, f"big{i}"), i * mib, min(mib, 2 * mib + 5 - i * mib))
                           for i in range(3))),
        DatasetEntry(b"docs/huge.bin", "file", 2 * aligned + 100,
                     tuple(Piece(cid(CODEC_DAG_PB if i < 2 else CODEC_RAW, f"huge{i}"), i * aligned,
                                 min(aligned, 2 * aligned + 100 - i * aligned)) for i in range(3))),
        DatasetEntry(b"link", "symlink", 0, (Piece(cid(CODEC_DAG_PB, "link"), 0, 0),), 12),
        DatasetEntry(b"empty", "dir"),
        DatasetEntry(b"docs/empty2", "dir"),
        DatasetEntry(b"caf\xe9/\xff", "file", 0, (Piece(cid(CODEC_RAW, ""), 0, 0),)),
    ]


@pytest.mark.parametrize("version", [1, 2])
def test_dataset_car_vectors(version, tmp_path):
    """The checked-in DAG CARs (v1 and v2): same bytes, they verify as partial CARs, whole files recorded."""
    from ptolemy_tui.core import carv2, commp

    out = io.BytesIO()
    sink = commp.CommP(deferred_prefix=carv2.PREFIX_LENGTH if version == 2 else 59)
    made = {}

    def v1(o, s):
        car, made["dag"] = dataset_dag.write_dataset_car(vector_entries(), o, shard_size=1 << 20, sink=s)
        return car

    car = carv2.wrap_blocks_v2(out, v1, sink) if version == 2 else v1(out, sink)
    path = VECTOR if version == 1 else VECTOR.replace(".car", "-v2.car")
    if os.environ.get("PTOLEMY_WRITE_VECTORS"):
        with open(path, "wb") as fh:
            fh.write(out.getvalue())
    with open(path, "rb") as fh:
        assert out.getvalue() == fh.read()
    assert car.car_size == len(out.getvalue())
    (tmp_path / "v.car").write_bytes(out.getvalue())
    assert sink.digest().piece_cid_v1 == commp.commp_of_file(str(tmp_path / "v.car")).piece_cid_v1
    report = carread.verify(str(tmp_path / "v.car"), partial=True)
    assert report.version == version and report.roots[0] == car.root_cid and report.external == 9
    assert sorted(made["dag"].whole_files) == [b"docs/big.bin", b"docs/huge.bin"]
