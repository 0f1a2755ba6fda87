"""Containerize: pack the scanned files into containers whose exact CAR size is ≤ the project's car_size.

The packing itself is core.packing (pure). This module loads the files in tree order (a directory's files
together, subtrees contiguous), writes Container and ContainerItem rows in one transaction (a crash leaves no
half-packed project), and reports. After a rescan it packs only what is not covered yet: files that are new,
and files whose containers went back for packing; the containers that still stand are kept.

Packed: regular files (whole, or shards `<path>.ptolemy<N>` from N = 0 when larger than shard_size) and
symlinks (UnixFS symlink entries, length 0, so the tree is whole). Not packed: empty directories (kept in the
Directory table and the manifest; a CAR entry would need a File row standing for a directory), sockets, FIFOs,
devices and unreadable entries (recorded by the scan with the reason).
"""
from __future__ import annotations

import contextlib
import time
from typing import Any

import peewee

from ptolemy_tui.core.packing import PackingError, Piece, pack, pieces_of, shard_name
from ptolemy_tui.core.sources import source_for
from ptolemy_tui.errors import UsageError
from ptolemy_tui.services import events, projects
from ptolemy_tui.store.db import is_postgres
from ptolemy_tui.store.fields import path_text
from ptolemy_tui.store.models import Car, Container, ContainerItem, Directory, File, Project, Scan, database

PACKED_KINDS = ("file", "symlink")
RESET_FROM = ("scanned", "containerizing", "containerized", "building", "built", "failed")  # containerizing: a crashed run (its transaction rolled back)
ITEM_BATCH = 20000
_ITEM_COLUMNS = ("container_id", "file_id", "seq", "offset", "length", "shard_index", "car_path")


def _tree_order(project: Project) -> dict[int, int]:
    """Directory id -> rank in depth-first order (a directory's own files first, then its subdirectories)."""
    dirs = Directory.select(Directory.id, Directory.path).where(Directory.project == project).tuples()
    ranked = sorted(((bytes(path).split(b"/") if path else [], did) for did, path in dirs))
    return {did: rank for rank, (_, did) in enumerate(ranked)}


def _covered(project: Project) -> set[tuple[int, int, int]]:
    """(file id, offset, length) of every item already in a container of the project."""
    q = (ContainerItem.select(ContainerItem.file, ContainerItem.offset, ContainerItem.length)
         .join(Container).where(Container.project == project).tuples())
    return set(q.iterator())


def _pieces(project: Project, covered: set | None) -> tuple[list[Piece], dict[str, int]]:
    rank = _tree_order(project)
    query = (File.select(File.id, File.directory, File.path, File.size, File.kind, File.link_target)
             .where((File.project == project) & (File.kind.in_(PACKED_KINDS))))
    # The raw cursor (same parameterised SQL) skips peewee's per-value conversion: a million rows load in ~1 s.
    sql, params = query.sql()
    cursor = database.execute_sql(sql, params)
    files = []
    get_rank = rank.get
    while True:
        batch = cursor.fetchmany(10000)
        if not batch:
            break
        # Within one directory, path order is name order: (directory rank, path) is the tree order.
        files.extend([(get_rank(did, -1), bytes(path), fid, size, kind, target)
                      for fid, did, path, size, kind, target in batch])
    files.sort()
    pieces: list[Piece] = []
    add = pieces.append
    stats = {"files": 0, "symlinks": 0}
    shard_size = project.shard_size
    nfiles = 0
    for _r, path, fid, size, kind, target in files:
        if kind == "symlink":
            if covered is not None and (fid, 0, 0) in covered:
                continue
            add(Piece(fid, path, 0, 0, None, "symlink", len(bytes(target or b""))))
            stats["symlinks"] += 1
            continue
        if size <= shard_size and covered is None:  # the common case: a plain tuple in Piece's field order
            add((fid, path, 0, size, None, "file", 0))
            nfiles += 1
            continue
        mine = pieces_of(fid, path, size, shard_size)
        if covered is not None:
            mine = [p for p in mine if (fid, p.offset, p.length) not in covered]
        if mine:
            nfiles += 1
            pieces.extend(mine)
    stats["files"] = nfiles
    return pieces, stats


def _insert_items(rows: list[tuple]) -> None:
    db = database.obj
    cols = ", ".join(f'"{c}"' for c in _ITEM_COLUMNS)
    table = ContainerItem._meta.table_name
    cursor = db.cursor()
    if is_postgres(db):
        from psycopg2.extras import execute_values

        execute_values(cursor, f'INSERT INTO "{table}" ({cols}) VALUES %s', rows, page_size=2000)
    else:
        cursor.executemany(f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" * len(_ITEM_COLUMNS))})', rows)


@contextlib.contextmanager
def _bulk_writes():
    """SQLite: no per-row foreign-key probes while the items go in (every id was just read from the store,
    inside the same transaction). The pragma only changes outside a transaction, hence here."""
    db = database.obj
    if is_postgres(db) or db.in_transaction():
        yield
        return
    db.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        db.execute_sql("PRAGMA foreign_keys = ON")


def _reset(project: Project, discard_built: bool) -> int:
    held = (Container.select().where((Container.project == project) & (Container.state.in_(("built", "building"))))
            .count())
    if held and not discard_built:
        raise UsageError(f"project {project.name} has {held} built or building container(s); --reset would discard "
                         f"them: add --discard-built to do so (CAR files in staging stay on disk)")
    ids = [c for (c,) in Container.select(Container.id).where(Container.project == project).tuples()]
    with database.atomic():
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            ContainerItem.delete().where(ContainerItem.container.in_(part)).execute()
            Car.delete().where(Car.container.in_(part)).execute()
            Container.delete().where(Container.id.in_(part)).execute()
    return len(ids)


def _shard_name_collision(project: Project) -> tuple[bytes, bytes] | None:
    """(shard name, the split file) when a shard's name `<path>.ptolemy<N>` is also a scanned path (a file or a
    directory) or another shard's: the CAR would hold one path twice and could never be built."""
    shard_size = project.shard_size
    names: dict[bytes, bytes] = {}
    big = (File.select(File.path, File.size).where(
        (File.project == project) & (File.kind == "file") & (File.size > shard_size)).tuples())
    for path, size in big.iterator():
        path = bytes(path)
        for n in range(-(-size // shard_size)):
            name = shard_name(path, n)
            if name in names:
                return name, path
            names[name] = path
    if not names:
        return None
    listed = list(names)
    for model in (File, Directory):
        for start in range(0, len(listed), 500):
            hit = (model.select(model.path).where((model.project == project) & model.path.in_(listed[start:start + 500]))
                   .tuples().first())
            if hit:
                return bytes(hit[0]), names[bytes(hit[0])]
    return None


REPORT_KEYS = ("project", "new_containers", "containers", "items", "shards", "files", "symlinks", "data_bytes",
               "predicted_bytes", "car_size", "shard_size", "mean_fill", "min_fill", "last_fill",
               "bytes_per_container", "discarded_containers", "seconds")


def containerize(project: Project, *, reset: bool = False, discard_built: bool = False) -> dict:
    """Pack the scanned files; return the report (REPORT_KEYS; fills are predicted CAR size / car_size, the
    mean and lowest over all containers packed now but the last)."""
    latest = Scan.select(Scan.state).where(Scan.project == project).order_by(Scan.id.desc()).first()
    if latest is None or latest.state != "done":
        raise UsageError(f"project {project.name} has no finished scan"
                         f"{' (the last one ' + latest.state + ')' if latest else ''}: run `ptolemy scan {project.name}`")
    if reset:
        if project.status not in RESET_FROM:
            projects.require_step(project, "containerize")
    else:
        projects.require_step(project, "containerize")
        if project.status == "containerized":
            raise UsageError(f"project {project.name} is already containerized: "
                             f"`ptolemy containerize {project.name} --reset` packs it again from scratch")
    collision = _shard_name_collision(project)
    if collision:
        clash, split = collision
        raise UsageError(f"cannot pack {project.name}: {path_text(clash)} is both a shard name of the split file "
                         f"{path_text(split)} and another path in the tree; rename one of them, then "
                         f"`ptolemy scan {project.name}` again")
    started = time.monotonic()
    discarded = _reset(project, discard_built) if reset else 0
    projects.set_status(project, "containerizing", None)
    try:
        existing = Container.select().where(Container.project == project).exists()
        covered = _covered(project) if existing else None
        pieces, stats = _pieces(project, covered)
        next_seq = (Container.select(peewee.fn.MAX(Container.seq)).where(Container.project == project).scalar() or 0) + 1
        boxes = []
        with _bulk_writes(), database.atomic():
            items: list[tuple] = []
            for box in pack(pieces, project.car_size):
                cid = Container.insert(project=project, seq=next_seq + len(boxes), state="pending",
                                       predicted_size=box.predicted_size, data_bytes=box.data_bytes,
                                       item_count=len(box.pieces), shard_count=box.shard_count).execute()
                items.extend([(cid, p[0], n, p[2], p[3], p[4], p[1]) for n, p in enumerate(box.pieces)])
                if len(items) >= ITEM_BATCH:
                    _insert_items(items)
                    items = []
                boxes.append((box.predicted_size, box.data_bytes, len(box.pieces), box.shard_count))
            if items:
                _insert_items(items)
    except PackingError as exc:
        projects.set_status(project, "failed", f"containerize failed: {exc}")
        events.record(project, f"containerize failed: {exc}", "error")
        raise UsageError(str(exc)) from None
    except Exception as exc:
        projects.set_status(project, "failed", f"containerize failed: {exc}")
        events.record(project, f"containerize failed: {exc}", "error")
        raise
    seconds = time.monotonic() - started
    report = _report(project, boxes, stats, seconds, discarded)
    projects.set_status(project, "containerized", None)
    events.record(project, f"containerized: {report['new_containers']} new container(s), {report['items']:,} items, "
                           f"{report['shards']:,} shards, mean fill {report['mean_fill']:.2%}")
    return report


def _report(project: Project, boxes: list[tuple], stats: dict, seconds: float, discarded: int) -> dict[str, Any]:
    car_size = project.car_size
    fills = [b[0] / car_size for b in boxes]
    body = fills[:-1] if len(fills) > 1 else fills
    total = Container.select().where(Container.project == project).count()
    return {
        "project": project.name,
        "new_containers": len(boxes),
        "containers": total,
        "items": sum(b[2] for b in boxes),
        "shards": sum(b[3] for b in boxes),
        "files": stats["files"],
        "symlinks": stats["symlinks"],
        "data_bytes": sum(b[1] for b in boxes),
        "predicted_bytes": sum(b[0] for b in boxes),
        "car_size": car_size,
        "shard_size": project.shard_size,
        "mean_fill": round(sum(body) / len(body), 6) if body else 0.0,
        "min_fill": round(min(body), 6) if body else 0.0,
        "last_fill": round(fills[-1], 6) if fills else 0.0,
        "bytes_per_container": [b[1] for b in boxes],
        "discarded_containers": discarded,
        "seconds": round(seconds, 3),
    }


def _fill(c: Container, car_size: int) -> float:
    return round(c.predicted_size / car_size, 6) if car_size else 0.0


def list_containers(project: Project) -> list[dict]:
    rows = Container.select().where(Container.project == project).order_by(Container.seq)
    return [{"id": c.id, "seq": c.seq, "state": c.state, "predicted_size": c.predicted_size,
             "data_bytes": c.data_bytes, "fill": _fill(c, project.car_size), "item_count": c.item_count,
             "shard_count": c.shard_count, "attempts": c.attempts, "error": c.error} for c in rows]


def container_items(project: Project, container_id: int) -> list[dict]:
    in_range = 1 <= container_id < 1 << 63  # a bigger number would overflow the store's integer, not just miss
    container = in_range and Container.get_or_none((Container.id == container_id) & (Container.project == project))
    if not container:
        raise UsageError(f"project {project.name} has no container {container_id}: see `ptolemy containers {project.name}`")
    source = source_for(project)
    q = (ContainerItem.select(ContainerItem.car_path, ContainerItem.offset, ContainerItem.length,
                              ContainerItem.shard_index, ContainerItem.file, File.path, File.kind)
         .join(File).where(ContainerItem.container == container).order_by(ContainerItem.seq).tuples())
    return [{"car_path": path_text(bytes(car_path)), "source": source.describe(bytes(path)),
             "offset": offset, "length": length, "shard_index": shard, "file_id": fid, "kind": kind}
            for car_path, offset, length, shard, fid, path, kind in q]
