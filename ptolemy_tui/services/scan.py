"""Scan: walk the target tree in parallel and record every entry, fast, on trees of millions of files.

The listing comes from the project's Source (core.source). A local tree is walked by core/local_walk.py (a
pool of threads over directories, so NFS round trips overlap) in a child process by default, so it uses the
second core while this process inserts; each directory's entries come back in chunks, regular files as a flat
list ready to bind. ONE writer — the calling thread, which owns the
store connection (peewee connections are per thread, and SQLite has a single writer anyway) — inserts in
large transactions with parameterised multi-row INSERTs (project and directory bound once a statement),
keeps the per-directory aggregates in memory (it sees every size), and writes progress to the Scan row about
twice a second for the TUI to poll.

A rescan diffs against the previous scan by path: unchanged rows stay (their container items with them),
changed rows are updated, new ones inserted, missing ones removed. A change that touches a container not yet
built sends that container back for packing (it is deleted; containerize packs its files again); a built CAR
holding a changed or removed file is marked stale with the reason.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import peewee

from ptolemy_tui.core import local_walk
from ptolemy_tui.core.source import SourceError
from ptolemy_tui.core.sources import source_for
from ptolemy_tui.errors import UsageError
from ptolemy_tui.core.states import UNBUILT, ContainerState, ProjectStatus, ScanState
from ptolemy_tui.services import events, jobs, projects
from ptolemy_tui.store import bulk, transitions
from ptolemy_tui.store.db import is_postgres
from ptolemy_tui.store.fields import path_text
from ptolemy_tui.store.models import Car, Container, ContainerItem, Directory, File, Project, Scan, database, now

log = logging.getLogger(__name__)

DEFAULT_THREADS = 8  # enough in-flight directory reads to hide NFS latency; the GIL caps CPU use anyway
FILE_ROWS_PER_INSERT = 199  # regular files per multi-row INSERT on SQLite: 2 + 5 x 199 parameters, within the
# 999 that SQLite before 3.32 allows in one statement
BATCH_ROWS = 20000  # rows per insert transaction
PROGRESS_EVERY = 0.5  # seconds between progress writes
LIVE_EVERY = 2.0  # seconds between writes of the top levels' running totals (the tree view is live)
LIVE_DEPTH = 2  # the root and two levels below: what an operator sees before opening anything
STALE_AFTER = 60.0  # seconds without a progress write before a running scan is taken as dead

# File row columns in the order the writer builds its tuples.
_FILE_COLUMNS = ("project_id", "directory_id", "path", "name", "size", "mtime_ns", "inode", "kind", "link_target",
                 "error", "etag")


@dataclass
class _DirAgg:
    parent: int | None
    depth: int
    bytes: int = 0  # regular-file bytes directly inside
    files: int = 0  # regular files directly inside
    file_count: int = 0  # non-directory entries directly inside
    dir_count: int = 0
    error: str | None = None


class _Prev:
    """The previous scan, for a rescan, read a directory at a time as the walk reaches it, so a rescan holds
    the directories' ids and the entries not seen yet, never the whole File table (100M rows do not fit).

    take() hands over (id, size, mtime_ns, kind, link_target, etag) of a path seen again; removed() is every
    previous entry the walk did not see: those left in the directories it visited, and all of those it never
    reached (removed directories)."""

    def __init__(self, project: Project):
        self.project = project
        self.dirs: dict[bytes, int] = {bytes(path): did for path, did in Directory.select(
            Directory.path, Directory.id).where(Directory.project == project).tuples().iterator()}
        self.unseen: dict[int, dict[bytes, tuple]] = {}  # visited directory id -> its entries not seen yet

    @staticmethod
    def _entries(where) -> dict[bytes, tuple]:
        query = File.select(File.path, File.id, File.size, File.mtime_ns, File.kind, File.link_target,
                            File.etag).where(where).tuples()
        return {bytes(path): (fid, size, mtime_ns, kind, bytes(target) if target is not None else None, etag)
                for path, fid, size, mtime_ns, kind, target, etag in query.iterator()}

    def visit(self, did: int) -> dict[bytes, tuple]:
        entries = self.unseen.get(did)
        if entries is None:
            entries = self.unseen[did] = self._entries((File.project == self.project) & (File.directory == did))
        return entries

    def take(self, did: int, path: bytes) -> tuple | None:
        return self.visit(did).pop(path, None)

    def removed(self) -> dict[bytes, tuple]:
        gone: dict[bytes, tuple] = {}
        for entries in self.unseen.values():
            gone.update(entries)
        never = [did for did in self.dirs.values() if did not in self.unseen]
        for part in _chunks(never):
            gone.update(self._entries((File.project == self.project) & File.directory.in_(part)))
        return gone


class _Writer:
    def __init__(self, project: Project, scan: Scan, prev: _Prev | None):
        self.project = project
        self.scan = scan
        self.prev = prev
        self.db = database.obj
        self.pg = is_postgres(self.db)
        self.dir_ids: dict[bytes, int] = {}
        self.aggs: dict[int, _DirAgg] = {}
        self.file_runs: list[tuple] = []  # (directory id, flat regular-file rows from the walker)
        self.inserts: list[tuple] = []  # whole rows: other kinds, rescan additions
        self.updates: list[tuple] = []
        self.pending = 0  # rows waiting for the next flush
        self.file_sql: dict[int, str] = {}
        self.changed_ids: list[int] = []
        self.changed_paths: dict[int, bytes] = {}
        table = File._meta.table_name
        cols = ", ".join(f'"{c}"' for c in _FILE_COLUMNS)
        self.file_insert_head = f'INSERT INTO "{table}" ({cols})'
        p = "%s" if self.pg else "?"
        self.update_sql = (f'UPDATE "{table}" SET "directory_id" = {p}, "size" = {p}, "mtime_ns" = {p}, "inode" = {p}, '
                           f'"kind" = {p}, "link_target" = {p}, "error" = {p}, "etag" = {p} WHERE "id" = {p}')
        # PostgreSQL: the regular files go in on a connection of their own, so the server stores a batch while
        # this process formats the next (the two took turns before: 1M files 9-18 s against SQLite's 4-7 s).
        self.loader = bulk.BackgroundCopy(self.db, File, _FILE_COLUMNS) if self.pg else None

    # -- directories

    def root(self) -> None:
        rid = self.prev.dirs.get(b"") if self.prev else None
        if rid is None:
            rid = Directory.insert(project=self.project, parent=None, path=b"", name=b"").execute()
        self.dir_ids[b""] = rid
        self.aggs[rid] = _DirAgg(None, 0)

    def add_dirs(self, parent_path: bytes, names: list[bytes]) -> None:
        parent_id = self.dir_ids[parent_path]
        prefix = parent_path + b"/" if parent_path else b""
        depth = self.aggs[parent_id].depth + 1
        fresh = []
        for name in names:
            path = prefix + name
            did = self.prev.dirs.get(path) if self.prev else None
            if did is None:
                fresh.append({"project": self.project.id, "parent": parent_id, "path": path, "name": name})
            else:
                self.dir_ids[path] = did
                self.aggs[did] = _DirAgg(parent_id, depth)
        for start in range(0, len(fresh), 500):
            part = fresh[start:start + 500]
            rows = Directory.insert_many(part).returning(Directory.id, Directory.path).tuples().execute()
            for did, path in rows:
                path = bytes(path)
                self.dir_ids[path] = did
                self.aggs[did] = _DirAgg(parent_id, depth)
        self.aggs[parent_id].dir_count += len(names)

    # -- files

    def add_chunk(self, chunk: tuple) -> None:
        rel, files, nfiles, nbytes, others, subdirs, error, _last = chunk
        did = self.dir_ids[rel]
        agg = self.aggs[did]
        s = self.scan
        if subdirs:
            self.add_dirs(rel, subdirs)
            s.directories += len(subdirs)
            s.entries += len(subdirs)
        if error:
            agg.error = error
            s.errors += 1
        if self.prev is None:
            if files:  # the common case: rows straight from the walker's flat list, no per-row work here
                self.file_runs.append((did, files))
                self.pending += nfiles
        else:
            it = iter(files)
            for path, name, size, mtime_ns, inode in zip(it, it, it, it, it):
                self._row(did, path, name, "file", size, mtime_ns, inode, None, None, None)
        objects = object_bytes = 0
        for other in others:
            # an object (S3) comes as kind "file" with its ETag as a ninth field
            path, name, kind, size, mtime_ns, inode, target, err = other[:8]
            etag = other[8] if len(other) > 8 else None
            if kind == "file":
                objects += 1
                object_bytes += size
            elif kind == "symlink":
                s.symlinks += 1
            elif kind == "special":
                s.skipped += 1
            else:
                s.errors += 1
            self._row(did, path, name, kind, size, mtime_ns, inode, target, err, etag)
        count = nfiles + len(others)
        nfiles += objects
        nbytes += object_bytes
        agg.bytes += nbytes
        agg.files += nfiles
        agg.file_count += count
        s.files += nfiles
        s.bytes += nbytes
        s.entries += count
        if self.pending >= BATCH_ROWS:
            self.flush()

    def _row(self, did, path, name, kind, size, mtime_ns, inode, target, error, etag) -> None:
        """One entry the slow way: rescan diff, or a kind other than a regular file."""
        if self.prev is not None:
            old = self.prev.take(did, path)
            if old is not None:
                fid, osize, omtime, okind, otarget, oetag = old
                if osize != size or omtime != mtime_ns or okind != kind or otarget != target or oetag != etag:
                    self.updates.append((did, size, mtime_ns, inode, kind, target, error, etag, fid))
                    self.pending += 1
                    if okind in ("file", "symlink"):
                        self.changed_ids.append(fid)
                        self.changed_paths[fid] = path
                    self.scan.changed += 1
                return
            self.scan.added += 1
        self.inserts.append((self.project.id, did, path, name, size, mtime_ns, inode, kind, target, error, etag))
        self.pending += 1

    def _file_sql(self, rows: int) -> str:
        """INSERT of `rows` regular files in one statement: project and directory bound once (?1, ?2), five
        parameters a row. Fewer statements and binds are most of what a row costs on SQLite."""
        sql = self.file_sql.get(rows)
        if sql is None:
            one = "(?1, ?2, ?, ?, ?, ?, ?, 'file', NULL, NULL, NULL)"
            sql = self.file_sql[rows] = f"{self.file_insert_head} VALUES {', '.join([one] * rows)}"
        return sql

    def _copy_text_of_runs(self) -> str:
        """The walker's regular files as COPY text in _FILE_COLUMNS order, straight from its flat lists (the
        one hot path that skips store.bulk's row formatter: no tuple a row, and the constant columns written
        once). Paths are bytea in hex; kind is 'file'; link_target, error and etag NULL."""
        pid = self.project.id
        parts = []
        for did, flat in self.file_runs:
            head = f"{pid}\t{did}\t\\\\x"
            it = iter(flat)
            parts.append("".join([f"{head}{path.hex()}\t\\\\x{name.hex()}\t{size}\t{mtime_ns}\t{inode}\tfile\t\\N\t\\N\t\\N\n"
                                  for path, name, size, mtime_ns, inode in zip(it, it, it, it, it)]))
        return "".join(parts)

    def _insert_files(self, cursor) -> None:
        pid = self.project.id
        if self.pg:  # COPY on the loader's own connection, while this thread goes on with the walk
            self.loader.submit(self._copy_text_of_runs())
            return
        step = FILE_ROWS_PER_INSERT * local_walk.FILE_FIELDS
        full = []
        for did, flat in self.file_runs:
            head = [pid, did]
            end = len(flat) - len(flat) % step
            full.extend(head + flat[i:i + step] for i in range(0, end, step))
            if end < len(flat):
                cursor.execute(self._file_sql((len(flat) - end) // local_walk.FILE_FIELDS), head + flat[end:])
        if full:
            cursor.executemany(self._file_sql(FILE_ROWS_PER_INSERT), full)

    def flush(self) -> None:
        if not self.pending:
            return
        with self.db.atomic():
            cursor = self.db.cursor()
            if self.file_runs:
                self._insert_files(cursor)
            if self.inserts:
                bulk.insert_rows(self.db, File, _FILE_COLUMNS, self.inserts)
            if self.updates:
                cursor.executemany(self.update_sql, self.updates)
        self.file_runs = []
        self.inserts = []
        self.updates = []
        self.pending = 0

    def drain(self) -> None:
        """Wait until every file row sent is stored (PostgreSQL's loader); raises what the loader met."""
        if self.loader is not None:
            self.loader.drain()

    def close(self) -> None:
        if self.loader is not None:
            self.loader.close()

    # -- the end

    def _totals(self) -> tuple[dict[int, int], dict[int, int]]:
        order = sorted(self.aggs.items(), key=lambda kv: kv[1].depth, reverse=True)
        total_bytes = {did: agg.bytes for did, agg in self.aggs.items()}
        total_files = {did: agg.files for did, agg in self.aggs.items()}
        for did, agg in order:
            if agg.parent is not None:
                total_bytes[agg.parent] += total_bytes[did]
                total_files[agg.parent] += total_files[did]
        return total_bytes, total_files

    def write_live_totals(self, max_depth: int = LIVE_DEPTH) -> None:
        """While the walk goes on: the running totals of the top levels, which the tree view shows first (it
        refreshes the open directories each second), so the tree is live rather than all zeros until the end."""
        total_bytes, total_files = self._totals()
        p = "%s" if self.pg else "?"
        sql = (f'UPDATE "{Directory._meta.table_name}" SET "total_bytes" = {p}, "total_files" = {p}, '
               f'"file_count" = {p}, "dir_count" = {p} WHERE "id" = {p}')
        rows = [(total_bytes[did], total_files[did], agg.file_count, agg.dir_count, did)
                for did, agg in self.aggs.items() if agg.depth <= max_depth]
        for start in range(0, len(rows), BATCH_ROWS):
            with self.db.atomic():
                self.db.cursor().executemany(sql, rows[start:start + BATCH_ROWS])

    def write_aggregates(self) -> None:
        """Recursive totals bottom-up in Python, then one batched UPDATE."""
        total_bytes, total_files = self._totals()
        p = "%s" if self.pg else "?"
        sql = (f'UPDATE "{Directory._meta.table_name}" SET "parent_id" = {p}, "total_bytes" = {p}, "total_files" = {p}, '
               f'"file_count" = {p}, "dir_count" = {p}, "error" = {p} WHERE "id" = {p}')
        rows = [(agg.parent, total_bytes[did], total_files[did], agg.file_count, agg.dir_count, agg.error, did)
                for did, agg in self.aggs.items()]
        for start in range(0, len(rows), BATCH_ROWS):
            with self.db.atomic():
                self.db.cursor().executemany(sql, rows[start:start + BATCH_ROWS])


def _load_previous(project: Project) -> _Prev | None:
    if not File.select().where(File.project == project).exists() and not Directory.select().where(
            Directory.project == project).exists():
        return None
    return _Prev(project)


def _chunks(ids: list[int], size: int = 500):
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _apply_changes(project: Project, writer: _Writer, removed: dict) -> dict:
    """Send unbuilt containers touched by changed/removed files back for packing; mark built CARs stale."""
    touched = {fid: path for fid, path in writer.changed_paths.items()}
    removed_ids = []
    for path, (fid, _size, _mtime, kind, _target, _etag) in removed.items():
        removed_ids.append(fid)
        if kind in ("file", "symlink"):
            touched[fid] = path
    by_container: dict[int, list[int]] = {}
    states: dict[int, str] = {}
    for part in _chunks(list(touched)):
        q = (ContainerItem.select(ContainerItem.container, ContainerItem.file, Container.state)
             .join(Container).where(ContainerItem.file.in_(part)).tuples())
        for cid, fid, state in q:
            by_container.setdefault(cid, []).append(fid)
            states[cid] = state
    repack = [cid for cid, st in states.items() if st in UNBUILT]
    built = [cid for cid, st in states.items() if st == ContainerState.BUILT]
    building = [cid for cid, st in states.items() if st == ContainerState.BUILDING]
    keep_removed: set[int] = set()  # removed files still described by a built or building container
    with database.atomic():
        for part in _chunks(repack):
            ContainerItem.delete().where(ContainerItem.container.in_(part)).execute()
            Container.delete().where(Container.id.in_(part)).execute()
        removed_set = set(removed_ids)
        for cid in built + building:
            keep_removed.update(f for f in by_container[cid] if f in removed_set)
        for cid in built:
            paths = sorted(touched[f] for f in set(by_container[cid]))
            shown = ", ".join(path_text(p) for p in paths[:3])
            more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            reason = f"source changed or removed since the build: {shown}{more}"
            Car.update(stale_reason=reason).where(Car.container == cid).execute()
        gone = [fid for fid in removed_ids if fid not in keep_removed]
        for part in _chunks(gone):
            File.delete().where(File.id.in_(part)).execute()
        for part in _chunks(sorted(keep_removed)):
            File.update(kind="removed", error="removed since the scan; kept because a CAR holds it").where(
                File.id.in_(part)).execute()
        removed_dirs = [did for path, did in (writer.prev.dirs.items() if writer.prev else ())
                        if path not in writer.dir_ids]
        # Children before parents: the parent link cascades, but files in them are already handled above.
        for part in _chunks(removed_dirs):
            File.update(directory=None).where(File.directory.in_(part)).execute()
            Directory.update(parent=None).where(Directory.id.in_(part)).execute()
            Directory.delete().where(Directory.id.in_(part)).execute()
    if building:
        events.record(project, f"{len(building)} container(s) being built hold changed files; their build will fail "
                               "with 'source changed since scan'", "warning")
    return {"repacked_containers": len(repack), "stale_cars": len(built), "building_touched": len(building)}


def _write_progress(scan: Scan, started: float, current: bytes | None) -> None:
    elapsed = max(time.monotonic() - started, 1e-6)
    scan.rate = scan.entries / elapsed
    scan.current_dir = current
    scan.updated_at = now()
    transitions.save_scan_progress(scan)


def _recover_interrupted(project: Project) -> None:
    """A scan whose process died leaves the project `scanning` and its Scan `running`: after a minute without
    a progress write it is taken as dead, so the project can be scanned again; at once when its owner's process
    is gone (this host) or its heartbeat stale (another). A live scan is refused."""
    jobs.recover_dead_job(project)
    owner = Project.select(Project.job_owner).where(
        (Project.id == project.id) & (Project.status == ProjectStatus.SCANNING)).scalar()
    if owner or not transitions.abandon_scans(project, now() - STALE_AFTER):
        raise UsageError(f"project {project.name} is being scanned right now: wait for it "
                         f"(`ptolemy status {project.name}`)")


def run_scan(project: Project, *, threads: int | None = None, on_progress: Callable[[Scan], None] | None = None,
             cancel: threading.Event | None = None, walker_mode: str = "process") -> Scan:
    """Scan the project's target tree into the store; the project goes scanning -> scanned (or failed).

    `walker_mode`: "process" walks in a child process (the default; see LocalSource.walker), "threads" in this one."""
    threads, source = _ready_to_scan(project, threads, walker_mode)
    previous_status = project.status
    scan = transitions.begin_scan(project, jobs.owner_token())
    events.record(project, f"scan started: {project.target_dir} with {threads} threads")
    cancel = cancel or threading.Event()
    with jobs.watched(project, cancel):
        return _ScanRun(project, scan, cancel, on_progress).run(source, threads, walker_mode, previous_status)


def _ready_to_scan(project: Project, threads: int | None, walker_mode: str):
    """Refuse a scan that cannot start (one running, out of order, bad arguments, target unreachable); else
    (walker threads, the project's Source)."""
    _recover_interrupted(project)
    projects.require_step(project, "scan")
    threads = threads or DEFAULT_THREADS
    if not 1 <= threads <= 256:
        raise UsageError(f"--threads {threads} is out of range: give 1 to 256")
    if walker_mode not in ("process", "threads"):
        raise ValueError(f"walker_mode {walker_mode!r}: give 'process' or 'threads'")
    source = source_for(project)
    try:
        source.check()
    except SourceError as exc:
        raise UsageError(f"target {exc}: fix it with `ptolemy project edit {project.name} --target DIR`") from None
    return threads, source


class _ScanRun:
    """One scan, in phases: walk (the walker's chunks into the writer, with progress and cancel), aggregate,
    apply a rescan's changes, finish; a cancel, a source failure or a bug ends the scan row instead."""

    def __init__(self, project: Project, scan: Scan, cancel: threading.Event,
                 on_progress: Callable[[Scan], None] | None):
        self.project, self.scan, self.cancel, self.on_progress = project, scan, cancel, on_progress
        self.started = time.monotonic()

    def run(self, source, threads: int, walker_mode: str, previous_status: str) -> Scan:
        project, scan = self.project, self.scan
        out: queue.Queue = queue.Queue(maxsize=64)  # bounds memory: at most 64 chunks of 4096 entries in flight
        fk_off = _foreign_keys_off()
        walker = source.walker(threads, out, self.cancel, walker_mode)
        writer = None
        try:
            prev = _load_previous(project)
            writer = _Writer(project, scan, prev)
            writer.root()
            walker.start()
            self._walk(out, writer)
            writer.flush()
            writer.drain()
            writer.write_aggregates()
            bulk.refresh_statistics(database.obj, File._meta.table_name, Directory._meta.table_name)
            if fk_off:  # the rescan's deletes below rely on ON DELETE CASCADE
                database.obj.execute_sql("PRAGMA foreign_keys = ON")
                fk_off = False
            self._finish(writer, prev, previous_status)
            return scan
        except _Cancelled:
            _finish_failed(project, scan, ScanState.CANCELLED, "scan cancelled: run it again")
            return scan
        except SourceError as exc:  # the source went away or refused us half-way: one line, not a traceback
            _finish_failed(project, scan, ScanState.FAILED, f"scan failed: {exc}")
            raise UsageError(f"scan of {project.name} failed: {exc}") from None
        except KeyboardInterrupt:
            _finish_failed(project, scan, ScanState.CANCELLED, "scan interrupted: run it again")
            raise
        except Exception as exc:
            _finish_failed(project, scan, ScanState.FAILED, f"scan failed: {exc}")
            raise
        finally:
            self.cancel.set()  # walkers stop listing; drain so none blocks on a full queue
            walker.stop()
            _drain(out, walker)
            if writer is not None:
                writer.close()
            if fk_off:
                database.obj.execute_sql("PRAGMA foreign_keys = ON")

    def _walk(self, out: queue.Queue, writer: _Writer) -> None:
        """Take the walker's chunks until it is done; progress about twice a second, live totals less often."""
        last_progress = last_live = 0.0
        current = None
        while True:
            try:
                item = out.get(timeout=PROGRESS_EVERY)
            except queue.Empty:
                item = False
            if item is None:
                if self.cancel.is_set():  # the walkers stopped early: the listing is incomplete
                    raise _Cancelled()
                return
            if isinstance(item, BaseException):
                raise item
            if item is not False:
                writer.add_chunk(item)
                current = item[0]
            t = time.monotonic()
            if t - last_progress >= PROGRESS_EVERY:
                last_progress = t
                writer.flush()
                _write_progress(self.scan, self.started, current)
                if t - last_live >= LIVE_EVERY:
                    last_live = t
                    writer.write_live_totals()
                if self.on_progress:
                    self.on_progress(self.scan)
            if self.cancel.is_set():
                raise _Cancelled()

    def _finish(self, writer: _Writer, prev: _Prev | None, previous_status: str) -> None:
        """A rescan's removals and their effects on containers and CARs; the scan done and the project's status:
        an unchanged rescan keeps a packed (or built) project as it was."""
        project, scan = self.project, self.scan
        removed = prev.removed() if prev else {}
        scan.removed = len(removed)
        effects = _apply_changes(project, writer, removed) if prev else {}
        scan.rate = scan.entries / max(time.monotonic() - self.started, 1e-6)
        if prev:
            scan.message = (f"rescan: {scan.added} added, {scan.changed} changed, {scan.removed} removed; "
                            f"{effects['repacked_containers']} container(s) back to packing, "
                            f"{effects['stale_cars']} CAR(s) stale")
        has_containers = Container.select().where(Container.project == project).exists()
        unchanged = prev is not None and not (scan.added or scan.changed or scan.removed)
        if unchanged and previous_status in (ProjectStatus.CONTAINERIZED, ProjectStatus.BUILT):
            status = ProjectStatus(previous_status)  # nothing moved: the packing (and the build) still stand
        else:
            status = ProjectStatus.SCANNED
        transitions.finish_scan(project, scan, status, None if status != ProjectStatus.SCANNED or not has_containers
                                else "rescanned: containerize packs what changed")
        if self.on_progress:
            self.on_progress(scan)
        events.record(project, f"scan done: {scan.entries:,} entries, {scan.files:,} files, {scan.bytes:,} bytes, "
                               f"{scan.symlinks:,} symlinks, {scan.skipped:,} skipped, {scan.errors:,} errors"
                      + (f"; {scan.message}" if scan.message else ""))


def _foreign_keys_off() -> bool:
    """SQLite: no per-row foreign-key probes while millions of rows go in; the writer only uses ids it has
    just created or read. The pragma only changes outside a transaction."""
    db = database.obj
    if is_postgres(db) or db.in_transaction():
        return False
    db.execute_sql("PRAGMA foreign_keys = OFF")
    return True


class _Cancelled(Exception):
    pass


def _drain(out: queue.Queue, walker) -> None:
    deadline = time.monotonic() + 5
    while walker.alive() and time.monotonic() < deadline:
        try:
            out.get(timeout=0.05)
        except queue.Empty:
            pass


def _finish_failed(project: Project, scan: Scan, state: ScanState, message: str) -> None:
    try:
        transitions.end_scan(project, scan, state, message)
        events.record(project, message, "warning" if state == ScanState.CANCELLED else "error")
    except peewee.PeeweeException:  # the store itself failed: the original error is what matters
        log.exception("could not record the scan's end")
