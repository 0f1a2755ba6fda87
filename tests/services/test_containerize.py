"""Containerize on SQLite and a real PostgreSQL: shards, empty files, big files, exact sizes, reset rules."""
from __future__ import annotations

import threading

import pytest

from ptolemy_tui.core.carsize import predict_car_size
from ptolemy_tui.core import packing
from ptolemy_tui.core.packing import CONTAINER_WRAP
from ptolemy_tui.core.unixfs import SourceEntry
from ptolemy_tui.errors import OperationFailed, UsageError
from ptolemy_tui.services import containerize, scan
from ptolemy_tui.store.models import Car, Container, ContainerItem, Directory, File, Project, Scan
from tests.services.pipeline_helpers import make_tree, new_project, write
from tests.states import force_status

MiB = 1 << 20


def _scanned(tmp_path, **kw) -> Project:
    project = new_project(tmp_path, **kw)
    scan.run_scan(project)
    return Project.get_by_id(project.id)


def _check_invariants(project: Project) -> None:
    """Every byte of every regular file in exactly one item; sizes exact and ≤ car_size; items in order."""
    files = {f.id: f for f in File.select().where((File.project == project) & (File.kind.in_(("file", "symlink"))))}
    by_file: dict[int, list] = {}
    for c in Container.select().where(Container.project == project).order_by(Container.seq):
        items = list(ContainerItem.select(ContainerItem, File).join(File).where(ContainerItem.container == c)
                     .order_by(ContainerItem.seq))
        entries = [SourceEntry(i.car_path, None, i.offset, i.length, "symlink" if i.file.kind == "symlink" else "file",
                               i.file.link_target or b"") for i in items]
        assert c.predicted_size == predict_car_size(entries, wrap=CONTAINER_WRAP), "the exact CAR size of the formats code"
        assert c.predicted_size <= project.car_size
        assert c.item_count == len(items) and c.data_bytes == sum(i.length for i in items)
        for i in items:
            by_file.setdefault(i.file_id, []).append((c.seq, i.offset, i.length, i.shard_index, i.car_path))
    assert set(by_file) == set(files), "every file and symlink is packed"
    for fid, pieces in by_file.items():
        f = files[fid]
        pos = 0
        for n, (_seq, offset, length, shard, car_path) in enumerate(pieces):
            assert offset == pos
            pos += length
            if len(pieces) > 1:
                assert shard == n and car_path == f.path + b".ptolemy%d" % n
            else:
                assert shard is None and car_path == f.path
        assert pos == (f.size if f.kind == "file" else 0)
        assert [p[0] for p in pieces] == sorted(p[0] for p in pieces)


def test_shard_edges_big_and_empty_files(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write(src / "exact.bin", 1 * MiB)  # exactly shard_size: one item
    write(src / "over.bin", 1 * MiB + 1)  # one byte over: two shards
    write(src / "huge.bin", 9 * MiB + 5)  # larger than car_size
    write(src / "empty1", 0)
    (src / "d").mkdir()
    write(src / "d" / "empty2", 0)
    make_tree(src / "odd")
    project = _scanned(tmp_path, car_size="4MiB", shard_size="1MiB")
    report = containerize.containerize(project)
    _check_invariants(project)
    items = {i.car_path: i for i in ContainerItem.select()}
    assert items[b"exact.bin"].shard_index is None and items[b"exact.bin"].length == MiB
    assert items[b"over.bin.ptolemy0"].length == MiB and items[b"over.bin.ptolemy1"].length == 1
    assert [items[b"huge.bin.ptolemy%d" % n].length for n in range(10)] == [MiB] * 9 + [5]
    assert items[b"empty1"].length == 0 and items[b"d/empty2"].length == 0
    assert report["shards"] == 12 and report["containers"] >= 4
    assert set(report) >= {"containers", "items", "shards", "mean_fill", "bytes_per_container", "data_bytes"}
    assert Project.get_by_id(project.id).status == "containerized"


def test_views(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write(src / "a.bin", 2 * MiB + 3)
    write(src / "b.txt", 4)
    project = _scanned(tmp_path)
    containerize.containerize(project)
    rows = containerize.list_containers(project)
    assert list(rows[0]) == ["id", "seq", "state", "predicted_size", "data_bytes", "fill", "item_count", "shard_count",
                             "attempts", "error"]
    assert rows[0]["state"] == "pending" and 0 < rows[0]["fill"] <= 1
    items = containerize.container_items(project, rows[0]["id"])
    assert items[0] == {"car_path": "a.bin.ptolemy0", "source": str(src / "a.bin"), "offset": 0, "length": MiB,
                        "shard_index": 0, "file_id": items[0]["file_id"], "kind": "file"}
    with pytest.raises(UsageError, match="no container"):
        containerize.container_items(project, 987654)


def test_rerun_refused_reset_rules(store, tmp_path):
    make_tree(tmp_path / "src")
    project = _scanned(tmp_path)
    containerize.containerize(project)
    project = Project.get_by_id(project.id)
    with pytest.raises(UsageError, match="already containerized"):
        containerize.containerize(project)
    first = containerize.list_containers(project)[0]["id"]
    Container.update(state="built").where(Container.id == first).execute()
    Car.create(project=project, container=first, path="x.car", payload_cid="b", piece_cid="b", car_size=1,
               padded_piece_size=128)
    with pytest.raises(UsageError, match="--discard-built"):
        containerize.containerize(project, reset=True)
    assert Container.select().where(Container.id == first).exists(), "nothing discarded when refused"
    report = containerize.containerize(Project.get_by_id(project.id), reset=True, discard_built=True)
    assert report["discarded_containers"] == 1 and not Car.select().exists()
    _check_invariants(project)


def test_unscanned_or_half_scanned_project_is_refused(store, tmp_path):
    make_tree(tmp_path / "src")
    project = new_project(tmp_path)
    with pytest.raises(UsageError, match="no finished scan"):
        containerize.containerize(project)
    cancel = threading.Event()
    cancel.set()
    scan.run_scan(project, cancel=cancel)  # the project is `failed`, which containerize may normally retry from
    with pytest.raises(UsageError, match="the last one cancelled"):
        containerize.containerize(Project.get_by_id(project.id))


def test_shard_that_fits_no_car_fails_with_the_fix(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write(src / "big", 4 * MiB)
    project = _scanned(tmp_path, car_size="4MiB", shard_size="4MiB")
    with pytest.raises(UsageError, match="lower the shard size"):
        containerize.containerize(project)
    assert Project.get_by_id(project.id).status == "failed"
    assert not Container.select().exists(), "nothing half-packed"


@pytest.mark.slow
def test_hundred_thousand_files_pack(sqlite_store, tmp_path):
    """100k scanned files (rows written directly: the scan's own 100k test walks a real tree)."""
    (tmp_path / "src").mkdir()
    project = new_project(tmp_path, car_size="1MiB", shard_size="1MiB")
    dirs = {}
    for d in range(50):
        path = b"d%02d" % d
        dirs[d] = Directory.create(project=project, path=path, name=path).id
    rows = [dict(project=project.id, directory=dirs[n // 2000], path=b"d%02d/f%04d" % (n // 2000, n % 2000),
                 name=b"f%04d" % (n % 2000), size=n % 997, kind="file") for n in range(100_000)]
    with sqlite_store.atomic():
        for start in range(0, len(rows), 2000):
            File.insert_many(rows[start:start + 2000]).execute()
    Scan.create(project=project, state="done", files=100_000)
    force_status(project, "scanned")
    report = containerize.containerize(project)
    assert report["items"] == 100_000 and report["mean_fill"] > 0.99
    assert ContainerItem.select().count() == 100_000
    assert max(c.predicted_size for c in Container.select()) <= 1 * MiB


def test_a_cancel_while_items_stream_in_leaves_nothing(store, tmp_path, monkeypatch):
    """Cancelled after several batches of items went out (on PostgreSQL through the open COPY): nothing of the
    packing stays, the store answers, and the next containerize packs everything."""
    src = tmp_path / "src"
    for d in range(4):
        (src / f"d{d}").mkdir(parents=True)
        for n in range(30):
            write(src / f"d{d}" / f"f{n:02d}", n)
    project = _scanned(tmp_path, car_size="1MiB")
    monkeypatch.setattr(containerize, "ITEM_BATCH", 7)
    monkeypatch.setattr(packing, "HANDOVER", 5)  # the packer hands its pieces over five at a time
    cancel = threading.Event()
    placed_so_far = []
    add = containerize._ContainerWriter.add

    def add_then_cancel(self, placed):
        add(self, placed)
        placed_so_far.extend(placed)
        if len(placed_so_far) >= 30:  # several batches of 7 sent by now
            cancel.set()

    monkeypatch.setattr(containerize._ContainerWriter, "add", add_then_cancel)
    with pytest.raises(OperationFailed, match="cancelled"):
        containerize.containerize(project, cancel=cancel)
    assert not [t for t in threading.enumerate() if t.name == "copy-rows"], "the COPY was ended before the rollback"
    assert not ContainerItem.select().exists() and not Container.select().exists()
    monkeypatch.setattr(containerize._ContainerWriter, "add", add)
    report = containerize.containerize(Project.get_by_id(project.id))
    assert report["items"] == 120
    _check_invariants(project)


def test_hamt_containers_get_their_exact_size_in_the_middle_of_the_packing(store, tmp_path):
    """A directory too big for one block (a HAMT) makes a container's size exact only from its items, read
    back in the middle of the packing (on PostgreSQL with the items' COPY closed and opened again); the
    containers after it are packed and sized as well."""
    wide = tmp_path / "src" / "wide"
    wide.mkdir(parents=True)
    for n in range(8000):  # ~3,400 entries a 1 MiB container, (80 + 36) bytes of link each: over 256 KiB
        write(wide / (f"{n:05d}-" + "n" * 74), 1)
    project = _scanned(tmp_path, car_size="1MiB", shard_size="1MiB")
    report = containerize.containerize(project)
    assert report["containers"] >= 3 and report["items"] == 8000
    _check_invariants(project)  # every predicted size equals the formats code's, the HAMTs' included
