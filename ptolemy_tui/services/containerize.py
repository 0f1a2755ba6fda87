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
import itertools
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import peewee

from ptolemy_tui import faults
from ptolemy_tui.core.display import is_plain, json_name_fields
from ptolemy_tui.core.packing import PackingError, Piece, exact_car_size, pack, pieces_of, shard_name
from ptolemy_tui.core.sources import source_for
from ptolemy_tui.core.states import ContainerState, ProjectStatus, ScanState
from ptolemy_tui.errors import OperationFailed, UsageError
from ptolemy_tui.services import events, jobs, projects
from ptolemy_tui.store import bulk, transitions
from ptolemy_tui.store.items import ItemStream
from ptolemy_tui.store.db import is_postgres
from ptolemy_tui.store.fields import path_text
from ptolemy_tui.store.models import Car, Container, ContainerItem, Directory, File, Project, Scan, database

PACKED_KINDS = ("file", "symlink")
ITEM_BATCH = 20000  # items written per batch (a batch is one container's)
FILE_BATCH = 20000  # files read per query when packing
DIRS_PER_QUERY = 500  # directories per query (bound parameters stay well inside SQLite's limit)
Reader = Callable[[str, Sequence], list]  # store.bulk.side_reader's (sql, params) -> rows


def _directories_in_tree_order(project: Project, read: Reader) -> list[tuple[int, int]]:
    """(directory id, entries directly inside) in depth-first order: a directory's own files first, then its
    subdirectories. One small tuple per directory: this is the only part of packing that grows with the tree."""
    dirs = _rows(read, Directory.select(Directory.id, Directory.path, Directory.file_count)
                 .where(Directory.project == project))
    ranked = sorted((bytes(path).split(b"/") if path else [], did, count) for did, path, count in dirs)
    return [(did, count) for _parts, did, count in ranked]


def _packable():
    return File.select(File.id, File.path, File.size, File.kind, File.link_target).where(File.kind.in_(PACKED_KINDS))


def _rows(read: Reader, query) -> list[tuple]:
    # The raw cursor (same parameterised SQL) skips peewee's per-value conversion: a million rows load in ~1 s.
    return read(*query.sql())


def _files_in_tree_order(project: Project, read: Reader) -> Iterator[list[tuple]]:
    """Batches of (file id, path, size, kind, link target) in tree order, at most about
    FILE_BATCH rows each (a directory wider than that is paged by path): memory stays flat in the number of
    files. Within one directory, path order is name order."""
    # Directory ids belong to one project, so the batches select by directory alone: with the project in the
    # WHERE, SQLite picks the (project, path) index and reads the whole project for every batch.
    base = _packable()
    # Files outside any directory row (the scan never makes them; the schema allows them): by the directory
    # index, which finds none in one probe, where the project's index would read every row of the project.
    orphans = _rows(read, base.select_extend(File.project).where(File.directory.is_null()))
    orphans = sorted((row[:5] for row in orphans if row[5] == project.id), key=lambda r: bytes(r[1]))
    if orphans:
        yield orphans
    batch: list[int] = []
    pending = 0
    for did, count in _directories_in_tree_order(project, read):
        if count > FILE_BATCH:
            if batch:
                yield _directory_batch(read, base, batch)
                batch, pending = [], 0
            yield from _wide_directory(read, base.where(File.project == project), did)
            continue
        batch.append(did)
        pending += count
        if pending >= FILE_BATCH or len(batch) >= DIRS_PER_QUERY:
            yield _directory_batch(read, base, batch)
            batch, pending = [], 0
    if batch:
        yield _directory_batch(read, base, batch)


def _directory_batch(read: Reader, base, dir_ids: list[int]) -> list[tuple]:
    """The files of these directories, a directory after the other in the order given, each by path: the
    store sorts them by each directory's rank in the list, joined from a VALUES list (a Python sort key a row,
    or regrouping the rows by directory here, cost more than the rest of reading them)."""
    ranks = peewee.ValuesList([(did, n) for n, did in enumerate(dir_ids)]).cte("ranked", columns=("did", "rank"))
    query = (base.join(ranks, on=(File.directory == ranks.c.did)).order_by(ranks.c.rank, File.path)
             .with_cte(ranks))
    return _rows(read, query)


def _wide_directory(read: Reader, base, did: int) -> Iterator[list[tuple]]:
    """One directory's files a page at a time, by path along the (project, path) index (never OFFSET)."""
    after = None
    while True:
        query = base.where(File.directory == did)
        if after is not None:
            query = query.where(File.path > after)
        rows = _rows(read, query.order_by(File.path).limit(FILE_BATCH))
        if not rows:
            return
        yield rows
        after = bytes(rows[-1][1])


def _covered(read: Reader, project: Project, file_ids: list[int]) -> set[tuple[int, int, int]]:
    """(file id, offset, length) of the items of these files already in a container of the project (committed
    before this packing began)."""
    covered: set[tuple[int, int, int]] = set()
    for start in range(0, len(file_ids), 500):
        q = (ContainerItem.select(ContainerItem.file, ContainerItem.offset, ContainerItem.length)
             .join(Container).where((Container.project == project)
                                    & (ContainerItem.file.in_(file_ids[start:start + 500]))))
        covered.update(tuple(row) for row in _rows(read, q))
    return covered


def _pieces(project: Project, repack: bool, stats: dict[str, int], read: Reader) -> Iterator[tuple]:
    """The pieces to pack, in tree order, as the packer asks for them; `stats` counts files and symlinks.
    With `repack`, pieces already in a container (kept from an earlier packing) are left out."""
    # A list a batch, chained: a generator suspended and resumed a piece cost as much as making the piece.
    return itertools.chain.from_iterable(_piece_batches(project, repack, stats, read))


def _piece_batches(project: Project, repack: bool, stats: dict[str, int], read: Reader) -> Iterator[list[tuple]]:
    shard_size = project.shard_size
    for rows in _files_in_tree_order(project, read):
        covered = _covered(read, project, [r[0] for r in rows]) if repack else None
        pieces: list[tuple] = []
        append = pieces.append
        files = symlinks = 0
        for fid, path, size, kind, target in rows:
            if kind == "file" and size <= shard_size and covered is None:  # the common case: Piece's fields
                files += 1
                append((fid, bytes(path), 0, size, None, "file", 0))
                continue
            path = bytes(path)
            if kind == "symlink":
                if covered is not None and (fid, 0, 0) in covered:
                    continue
                symlinks += 1
                append(Piece(fid, path, 0, 0, None, "symlink", len(bytes(target or b""))))
                continue
            mine = pieces_of(fid, path, size, shard_size)
            if covered is not None:
                mine = [p for p in mine if (fid, p.offset, p.length) not in covered]
            if mine:
                files += 1
                pieces.extend(mine)
        stats["files"] += files
        stats["symlinks"] += symlinks
        yield pieces


class _ContainerWriter:
    """Writes each container's items as the packer places them, ITEM_BATCH rows at a time, so a container
    of millions of items never sits in memory. The items stream (store.items.ItemStream), so the packing reads
    through a side reader.

    SQLite: a container's row is written at its first item and completed when the packer closes it.
    PostgreSQL: the items' COPY stays open from the first container to the last, so that the server stores
    one container's items while the next is packed (closing it at every container made the two take turns:
    1M files in 159 containers, 13-15 s against SQLite's 6-7 s); a container's id comes from the table's
    sequence at its first item, and the rows of all the containers are written by finish(), in the same
    transaction (no foreign key points from the items to them on PostgreSQL: see store.schema)."""

    def __init__(self, project: Project, first_seq: int, cancel: threading.Event, read: Reader):
        self.project, self.cancel, self.read = project, cancel, read
        self.seq = self.first_seq = first_seq
        self.container_id: int | None = None
        self.item_seq = 0  # the seq of the first piece in `pending`
        self.pending: list = []  # the open container's pieces not yet written
        self.items = ItemStream(database.obj)
        self.deferred = is_postgres(database.obj)
        self.finished: list[dict] = []  # PostgreSQL: the containers' rows, for finish()

    def __enter__(self) -> "_ContainerWriter":
        return self

    def __exit__(self, *_exc) -> None:
        self.items.abort()  # a packing that raised: the connection is free again for the rollback

    def add(self, placed: list) -> None:
        if self.container_id is None and self.seq == self.first_seq:
            faults.reach("mid-pack")
        if self.cancel.is_set():
            raise _Cancelled()
        if self.container_id is None:
            self.container_id = self._new_container()
            self.item_seq = 0
        self.pending.extend(placed)
        if len(self.pending) >= ITEM_BATCH:
            self.flush()

    def _new_container(self) -> int:
        if self.deferred:  # nextval is outside transactions: the side connection may draw it
            (cid,), = self.read("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", (Container._meta.table_name,))
            return cid
        return Container.insert(project=self.project, seq=self.seq).execute()

    def flush(self) -> None:
        self.items.add(self.container_id, self.item_seq, self.pending)
        self.item_seq += len(self.pending)
        self.pending = []

    def close(self, box) -> tuple[int, int, int, int]:
        """Complete the container the packer closed; (predicted size, data bytes, items, shards)."""
        self.flush()
        if not box.exact or not self.deferred:
            self.items.close()  # its items are read back (a HAMT's exact size) or its row updated now
        predicted = box.predicted_size if box.exact else self._exact_size()
        fields = dict(predicted_size=predicted, data_bytes=box.data_bytes, item_count=box.item_count,
                      shard_count=box.shard_count)
        if self.deferred:
            self.finished.append(dict(id=self.container_id, project=self.project.id, seq=self.seq, **fields))
        else:
            Container.update(**fields).where(Container.id == self.container_id).execute()
        self.container_id = None
        self.seq += 1
        return predicted, box.data_bytes, box.item_count, box.shard_count

    def finish(self) -> None:
        """The packing is done: every item stored, then (PostgreSQL) the containers' rows."""
        self.items.close()
        for start in range(0, len(self.finished), 500):
            Container.insert_many(self.finished[start:start + 500]).execute()
        self.finished = []

    def _exact_size(self) -> int:
        """A container with a HAMT directory: the exact length from its items (the sizer gave an upper bound)."""
        q = (ContainerItem.select(ContainerItem.file, ContainerItem.car_path, ContainerItem.offset,
                                  ContainerItem.length, ContainerItem.shard_index, File.kind, File.link_target)
             .join(File).where(ContainerItem.container == self.container_id).order_by(ContainerItem.seq).tuples())
        pieces = [Piece(fid, bytes(car_path), offset, length, shard, kind,
                        len(bytes(target)) if kind == "symlink" and target is not None else 0)
                  for fid, car_path, offset, length, shard, kind, target in q.iterator()]
        return exact_car_size(pieces, self.project.profile)[0]


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
    held = (Container.select().where((Container.project == project) & (Container.state.in_(
        (ContainerState.BUILT, ContainerState.BUILDING))))
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


def _retire_stale(project: Project) -> int:
    """A built container whose CAR went stale (a rescan found a source changed or removed) gives its files back
    for packing: its items go, so the files count as not covered and are packed into new containers with what
    changed. The container, its CAR record (still marked stale, still in `cars`, `manifest` and `files`) and
    the CAR file stay: a deal may already have been made with it."""
    ids = [c for (c,) in Car.select(Car.container).where(
        (Car.project == project) & Car.stale_reason.is_null(False)).tuples()]
    retired = 0
    with database.atomic():
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            retired += ContainerItem.select(ContainerItem.container).where(
                ContainerItem.container.in_(part)).distinct().count()
            ContainerItem.delete().where(ContainerItem.container.in_(part)).execute()
    if retired:
        events.record(project, f"{retired} stale CAR(s): their files are packed again with what changed")
    return retired


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


class _Cancelled(Exception):
    pass


def containerize(project: Project, *, reset: bool = False, discard_built: bool = False,
                 cancel: threading.Event | None = None) -> dict:
    """Pack the scanned files; return the report (REPORT_KEYS; fills are predicted CAR size / car_size, the
    mean and lowest over all containers packed now but the last). The packing is one transaction: a cancel (the
    event, or asked through the store) or a crash leaves nothing of it."""
    jobs.recover_dead_job(project)
    latest = Scan.select(Scan.state).where(Scan.project == project).order_by(Scan.id.desc()).first()
    if latest is None or latest.state != ScanState.DONE:
        raise UsageError(f"project {project.name} has no finished scan"
                         f"{' (the last one ' + latest.state + ')' if latest else ''}: run `ptolemy scan {project.name}`")
    if reset and project.status == ProjectStatus.BUILDING:
        # Discarding the containers under running workers would end their build silently (and their CARs
        # would be recorded against nothing): the build is stopped on purpose first.
        raise UsageError(f"a build of {project.name} is running: `ptolemy cancel {project.name}` first, then "
                         f"`ptolemy containerize {project.name} --reset`")
    if reset:
        if project.status not in transitions.RESET_FROM:
            projects.require_step(project, "containerize")
    else:
        projects.require_step(project, "containerize")
        if project.status == ProjectStatus.CONTAINERIZED:
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
    transitions.begin_containerize(project, jobs.owner_token(), reset=reset)
    cancel = cancel or threading.Event()
    try:
        if not reset:
            _retire_stale(project)
        repack = Container.select().where(Container.project == project).exists()
        stats = {"files": 0, "symlinks": 0}
        next_seq = (Container.select(peewee.fn.MAX(Container.seq)).where(Container.project == project).scalar() or 0) + 1
        boxes = []
        with jobs.watched(project, cancel), _bulk_writes(), bulk.side_reader(database.obj) as read, \
                database.atomic(), _ContainerWriter(project, next_seq, cancel, read) as writer:
            for box in pack(_pieces(project, repack, stats, read), project.car_size, profile=project.profile,
                            on_pieces=writer.add):
                boxes.append(writer.close(box))
            writer.finish()
        bulk.refresh_statistics(database.obj, ContainerItem._meta.table_name)
    except (_Cancelled, KeyboardInterrupt) as exc:
        message = "containerize cancelled: nothing was packed; run it again"
        transitions.fail_containerize(project, message)
        events.record(project, message, "warning")
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise OperationFailed(f"{project.name}: {message}") from None
    except Exception as exc:
        transitions.fail_containerize(project, f"containerize failed: {exc}")
        events.record(project, f"containerize failed: {exc}", "error")
        if isinstance(exc, PackingError):
            raise UsageError(str(exc)) from None
        raise
    seconds = time.monotonic() - started
    report = _report(project, boxes, stats, seconds, discarded)
    transitions.finish_containerize(project)
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


def list_containers(project: Project) -> list[dict]:
    """The CLI's listing: the same ContainerRow read model the TUI's Containers tab shows."""
    from ptolemy_tui.services import views

    return [row.json() for row in views.containers(project.id).rows]


def _source_fields(source, rel: bytes) -> dict:
    fields = {"source": source.describe(rel)}
    raw = source.path(rel) if hasattr(source, "path") else None  # a local file's exact path bytes
    if raw is not None and not is_plain(raw):
        fields["source_hex"] = bytes(raw).hex()
    return fields


def container_items(project: Project, container_id: int) -> list[dict]:
    in_range = 1 <= container_id < 1 << 63  # a bigger number would overflow the store's integer, not just miss
    container = in_range and Container.get_or_none((Container.id == container_id) & (Container.project == project))
    if not container:
        raise UsageError(f"project {project.name} has no container {container_id}: see `ptolemy containers {project.name}`")
    source = source_for(project)
    q = (ContainerItem.select(ContainerItem.car_path, ContainerItem.offset, ContainerItem.length,
                              ContainerItem.shard_index, ContainerItem.file, File.path, File.kind)
         .join(File).where(ContainerItem.container == container).order_by(ContainerItem.seq).tuples())
    # Escaped text for people (core.display), plus car_path_hex / source_hex with the exact bytes when needed.
    return [json_name_fields(bytes(car_path), "car_path") | _source_fields(source, bytes(path))
            | {"offset": offset, "length": length, "shard_index": shard, "file_id": fid, "kind": kind}
            for car_path, offset, length, shard, fid, path, kind in q]
