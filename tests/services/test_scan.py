"""Scan on SQLite and a real PostgreSQL: real trees in tmp_path, every entry kind, rescans and their effects."""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from ptolemy_tui.errors import UsageError
from ptolemy_tui.core import local_walk as scan_walk
from ptolemy_tui.services import containerize, events, scan, status
from ptolemy_tui.store.models import Car, Container, ContainerItem, Directory, File, Project, Scan
from tests.services.pipeline_helpers import ODD_NAMES, deny_listing, make_tree, new_project, regular_files, write
from tests.states import force_status


def _files(project) -> dict[bytes, File]:
    return {f.path: f for f in File.select().where(File.project == project)}


def test_scan_records_every_entry_kind(store, tmp_path, request, monkeypatch):
    info = make_tree(tmp_path / "src")
    (tmp_path / "src" / "locked").mkdir()
    write(tmp_path / "src" / "locked" / "hidden.bin", 7)
    truth = regular_files(tmp_path / "src")
    deny_listing(request, monkeypatch, scan, tmp_path / "src" / "locked")
    project = new_project(tmp_path)
    progress = []
    result = scan.run_scan(project, threads=3, on_progress=lambda s: progress.append(s.entries),
                           walker_mode="threads")

    truth.pop(b"locked/hidden.bin")  # behind the unreadable directory
    rows = _files(project)
    regular = {p: f.size for p, f in rows.items() if f.kind == "file"}
    assert regular == truth, "every regular file with its exact bytes path and size"
    for name in ODD_NAMES:
        assert b"docs/" + name in rows, f"{name!r} round-trips exactly"
    assert rows[b"docs/loop"].kind == "symlink" and rows[b"docs/loop"].link_target == b".."
    assert rows[b"link-to-top"].link_target == b"top.bin"
    assert rows[b"docs/pipe"].kind == "special" and "fifo" in rows[b"docs/pipe"].error
    f = rows[b"top.bin"]
    st = os.lstat(tmp_path / "src" / "top.bin")
    assert (f.mtime_ns, f.inode, f.name) == (st.st_mtime_ns, st.st_ino, b"top.bin")

    assert result.state == "done"
    assert result.files == len(truth) and result.bytes == sum(truth.values())
    assert result.symlinks == 2 and result.skipped == 1 + info["sockets"] and result.errors == 1
    assert result.directories == 5  # docs, docs/deep, docs/deep/deeper, empty-dir, locked (the root is not counted)
    locked = Directory.get((Directory.project == project) & (Directory.path == b"locked"))
    assert "Permission denied" in locked.error
    assert progress and progress[-1] == result.entries
    project = Project.get_by_id(project.id)
    assert project.status == "scanned"
    report = status.project_report(project)["scan"]
    assert (report["symlinks"], report["errors"], report["skipped"]) == (2, 1, 1 + info["sockets"])
    assert report["error_paths"] == [{"path": "locked", "kind": "dir", "error": "Permission denied"}]
    assert {"path": "docs/pipe", "reason": "skipped: fifo"} in report["skipped_paths"]
    assert any("scan done" in e.text for e in events.recent(project))


def test_directory_aggregates(store, tmp_path):
    info = make_tree(tmp_path / "src")
    project = new_project(tmp_path)
    scan.run_scan(project)
    dirs = {d.path: d for d in Directory.select().where(Directory.project == project)}
    truth = regular_files(tmp_path / "src")
    for path, d in dirs.items():
        below = {p: s for p, s in truth.items() if not path or p.startswith(path + b"/")}
        assert d.total_bytes == sum(below.values()), path
        assert d.total_files == len(below), path
        if path:
            assert dirs[path.rpartition(b"/")[0]].id == d.parent_id
    root = dirs[b""]
    assert root.parent_id is None and root.dir_count == 2
    assert root.file_count == 2 + info["sockets"]  # top.bin, link-to-top and the socket
    assert dirs[b"docs"].dir_count == 1 and dirs[b"empty-dir"].total_files == 0


def test_rescan_reports_and_repacks(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for n in range(9):
        write(src / f"f{n}.bin", 600 * 1024)  # six fill a 4 MiB container: two containers
    write(src / "stay.txt", 5)
    project = new_project(tmp_path)
    scan.run_scan(project)
    containerize.containerize(project)
    boxes = containerize.list_containers(project)
    assert len(boxes) == 2
    # The first container is built; the second is still pending.
    first, second = boxes[0]["id"], boxes[1]["id"]
    Container.update(state="built").where(Container.id == first).execute()
    Car.create(project=project, container=first, path="x.car", payload_cid="b", piece_cid="b", car_size=1,
               padded_piece_size=128)
    in_first = [i["source"] for i in containerize.container_items(project, first)]
    in_second = [i["source"] for i in containerize.container_items(project, second)]
    changed_built = os.path.basename(in_first[0])
    replaced_pending = os.path.basename(in_second[0])
    os.unlink(src / replaced_pending)  # replaced between scan and rescan: a new file with new bytes
    write(src / replaced_pending, 1234)
    with open(src / changed_built, "ab") as fh:
        fh.write(b"more")
    write(src / "added.bin", 42)
    os.unlink(src / "stay.txt")

    project = Project.get_by_id(project.id)
    result = scan.run_scan(project)
    assert (result.added, result.changed, result.removed) == (1, 2, 1)
    assert "1 container(s) back to packing" in result.message
    assert not Container.select().where(Container.id == second).exists(), "the unbuilt container goes back"
    car = Car.get(Car.container == first)
    assert car.stale_reason and changed_built in car.stale_reason
    project = Project.get_by_id(project.id)
    assert project.status == "scanned"

    report = containerize.containerize(project)
    assert report["new_containers"] >= 1
    # Every byte of every file not in the built (stale) container is now in exactly one container item.
    items = list(ContainerItem.select(ContainerItem, File).join(File).where(File.project == project))
    covered: dict[bytes, int] = {}
    for item in items:
        covered[item.file.path] = covered.get(item.file.path, 0) + item.length
    truth = regular_files(src)
    for path, size in truth.items():
        if path.decode() == changed_built:
            continue  # held by the stale CAR; the operator rebuilds or discards it
        assert covered.get(path) == size, path
    stay = File.get_or_none((File.project == project) & (File.path == b"stay.txt"))
    if any(p.endswith("/stay.txt") for p in in_first):
        assert stay.kind == "removed", "a removed file a built CAR holds keeps its row, marked removed"
    else:
        assert stay is None and b"stay.txt" not in covered


def test_rescan_unchanged_keeps_status(store, tmp_path):
    make_tree(tmp_path / "src")
    project = new_project(tmp_path)
    scan.run_scan(project)
    containerize.containerize(project)
    project = Project.get_by_id(project.id)
    before = {f.id for f in File.select().where(File.project == project)}
    again = scan.run_scan(project)
    assert (again.added, again.changed, again.removed) == (0, 0, 0)
    assert {f.id for f in File.select().where(File.project == project)} == before, "unchanged rows are kept"
    assert Project.get_by_id(project.id).status == "containerized"


def test_scan_refused_out_of_order_and_cancel(store, tmp_path):
    make_tree(tmp_path / "src")
    project = new_project(tmp_path)
    force_status(project, "building")
    with pytest.raises(UsageError, match="cannot scan"):
        scan.run_scan(project)
    force_status(project, "defined")
    cancel = threading.Event()
    cancel.set()
    result = scan.run_scan(project, cancel=cancel)
    assert result.state == "cancelled"
    assert Project.get_by_id(project.id).status == "failed"
    assert scan.run_scan(Project.get_by_id(project.id)).state == "done", "a cancelled scan can be run again"


@pytest.mark.slow
def test_hundred_thousand_files(sqlite_store, tmp_path):
    # The tree goes on tmpfs when there is one: creating 100k files on a busy shared disk takes longer than
    # the scan itself by an order of magnitude.
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else str(tmp_path)
    src = Path(tempfile.mkdtemp(prefix="ptolemy-100k-", dir=base))
    request_cleanup = src
    try:
        _scan_hundred_thousand(src, tmp_path)
    finally:
        shutil.rmtree(request_cleanup, ignore_errors=True)


def _scan_hundred_thousand(src: Path, tmp_path: Path) -> None:
    for d in range(100):
        sub = src / f"d{d:03d}"
        sub.mkdir()
        for n in range(1000):
            os.close(os.open(sub / f"f{n:04d}", os.O_CREAT | os.O_WRONLY, 0o644))
    project = new_project(tmp_path, target=src)
    t = time.monotonic()
    result = scan.run_scan(project)
    took = time.monotonic() - t
    assert result.files == 100_000 and result.directories == 100
    assert File.select().where(File.project == project).count() == 100_000
    root = Directory.get((Directory.project == project) & (Directory.path == b""))
    assert root.total_files == 100_000 and root.dir_count == 100
    print(f"100k files scanned in {took:.2f}s")


def test_interrupted_scan_is_recovered_live_one_refused(store, tmp_path):
    make_tree(tmp_path / "src")
    project = new_project(tmp_path)
    force_status(project, "scanning")
    live = Scan.create(project=project)
    with pytest.raises(UsageError, match="being scanned right now"):
        scan.run_scan(project)
    Scan.update(updated_at=time.time() - 120).where(Scan.id == live.id).execute()  # its process died
    assert scan.run_scan(Project.get_by_id(project.id)).state == "done"
    assert Scan.get_by_id(live.id).state == "failed"
    assert Project.get_by_id(project.id).status == "scanned"


def _rows(project) -> dict:
    return {f.path: (f.name, f.kind, f.size, f.mtime_ns, f.inode, f.link_target, f.error)
            for f in File.select().where(File.project == project)}


def _dirs(project) -> dict:
    return {d.path: (d.name, d.total_bytes, d.total_files, d.file_count, d.dir_count, d.error)
            for d in Directory.select().where(Directory.project == project)}


def test_walker_process_and_threads_record_the_same(store, tmp_path):
    """The child-process walk (the default) and the in-process one give identical rows, with every entry kind,
    non-UTF-8 names, directories bigger than one multi-row INSERT and than one walker chunk."""
    src = tmp_path / "src"
    make_tree(src)
    (src / "wide").mkdir()
    for n in range(scan_walk.CHUNK_ENTRIES + 7):  # two chunks; rows not a multiple of one INSERT
        write(src / "wide" / f"w{n:05d}", n % 5)
    (src / "mid").mkdir()
    for n in range(scan.FILE_ROWS_PER_INSERT * 2 + 3):
        write(src / "mid" / f"m{n:04d}", 1)
    truth = regular_files(src)
    got = {}
    for mode in ("process", "threads"):
        project = new_project(tmp_path, mode, target=src)
        result = scan.run_scan(project, threads=3, walker_mode=mode)
        assert result.state == "done" and result.files == len(truth) and result.bytes == sum(truth.values())
        rows = _rows(project)
        assert {p: r[2] for p, r in rows.items() if r[1] == "file"} == truth
        assert all(p.rpartition(b"/")[2] == r[0] for p, r in rows.items()), "name is the path's last part"
        got[mode] = (rows, _dirs(project), result.entries, result.symlinks, result.skipped, result.errors)
    assert got["process"] == got["threads"]


def test_walker_process_failure_fails_the_scan(store, tmp_path, monkeypatch):
    make_tree(tmp_path / "src")
    project = new_project(tmp_path)
    monkeypatch.setattr(scan_walk, "__file__", str(tmp_path / "missing-walker.py"))  # the child cannot start
    with pytest.raises(RuntimeError, match="walker process ended early"):
        scan.run_scan(project)
    assert Project.get_by_id(project.id).status == "failed"
    assert Scan.get(Scan.project == project).state == "failed"


def test_cancel_mid_scan_stops_the_walker_process(store, tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for d in range(40):
        (src / f"d{d:02d}").mkdir()
        for n in range(50):
            write(src / f"d{d:02d}" / f"f{n}", 1)
    project = new_project(tmp_path)
    cancel = threading.Event()
    seen = []
    orig = scan._Writer.add_chunk

    def add_chunk(self, chunk):
        orig(self, chunk)
        seen.append(chunk[0])
        if len(seen) == 3:
            cancel.set()

    monkeypatch.setattr(scan._Writer, "add_chunk", add_chunk)
    result = scan.run_scan(project, cancel=cancel)
    monkeypatch.undo()
    assert result.state == "cancelled" and len(seen) < 41
    assert scan.run_scan(Project.get_by_id(project.id)).state == "done", "a cancelled scan can be run again"


def _walk_with_clocks(tmp_path, monkeypatch, *, listing_waits: float, handover_waits: float) -> int:
    """Walk six one-file directories with injected clocks: each listing waits `listing_waits` seconds without
    CPU (an NFS round trip), each chunk handed over waits `handover_waits` (a busy consumer); the walker's
    active threads at the end."""
    import queue

    for d in range(6):
        (tmp_path / f"d{d}").mkdir()
        write(tmp_path / f"d{d}" / "f", 1)
    clock = [0.0]
    monkeypatch.setattr(scan_walk, "WALL_CLOCK", lambda: clock[0])
    monkeypatch.setattr(scan_walk, "CPU_CLOCK", lambda: 0.0)
    list_directory = scan_walk.list_directory

    def listing(path):
        clock[0] += listing_waits
        return list_directory(path)

    monkeypatch.setattr(scan_walk, "list_directory", listing)
    emit = scan_walk.Walker._emit

    def handover(self, chunk):
        clock[0] += handover_waits
        emit(self, chunk)

    monkeypatch.setattr(scan_walk.Walker, "_emit", handover)
    out: queue.Queue = queue.Queue()
    walker = scan_walk.Walker(os.fsencode(tmp_path), 4, out, threading.Event())
    walker.start()
    chunks = []
    while (item := out.get(timeout=10)) is not None:
        chunks.append(item)
    walker.stop()
    assert sorted(c[0] for c in chunks) == [b""] + [f"d{d}".encode() for d in range(6)]
    assert sum(c[2] for c in chunks) == 6
    return walker.active


def test_walker_widens_when_listings_wait(tmp_path, monkeypatch):
    """Listings that wait (I/O) longer than SLOW_PER_ENTRY an entry let more threads list at once."""
    assert _walk_with_clocks(tmp_path, monkeypatch, listing_waits=0.5, handover_waits=0.0) == 4


def test_walker_stays_narrow_when_only_its_consumer_is_slow(tmp_path, monkeypatch):
    """Chunks that wait for a busy consumer are not slow I/O: the walk stays on one thread (counted as slow,
    they widened the walk of a warm tmpfs to 8 threads and made a 1M-file scan up to 2x slower)."""
    assert _walk_with_clocks(tmp_path, monkeypatch, listing_waits=0.0, handover_waits=0.5) == 1


def test_rescan_of_an_unchanged_tree_writes_no_file_row(sqlite_store, tmp_path):
    """At a million files a rescan that rewrote every row would cost as much as the first scan: a trigger
    counts every INSERT, UPDATE and DELETE on the file table while an unchanged tree is scanned again."""
    make_tree(tmp_path / "src")
    project = new_project(tmp_path)
    scan.run_scan(project)
    db = sqlite_store
    db.execute_sql("CREATE TABLE probe (op TEXT)")
    for op in ("INSERT", "UPDATE", "DELETE"):
        db.execute_sql(f"CREATE TRIGGER probe_{op.lower()} AFTER {op} ON file BEGIN "
                       f"INSERT INTO probe VALUES ('{op}'); END")
    again = scan.run_scan(project)
    assert (again.added, again.changed, again.removed) == (0, 0, 0)
    assert db.execute_sql("SELECT COUNT(*) FROM probe").fetchone()[0] == 0
    (tmp_path / "src" / "new-file.txt").write_bytes(b"fresh")
    scan.run_scan(project)
    assert db.execute_sql("SELECT op, COUNT(*) FROM probe GROUP BY op").fetchall() == [("INSERT", 1)]
