"""Read models: what the screens (and the CLI's listings) show, computed in one place and returned as typed,
immutable rows. Every function here reads the store and returns plain values, so the TUI can call it in a thread
worker and hand the result to the event loop; screens never query the store themselves.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any

import peewee
import psutil

from ptolemy_tui.core.sources import is_s3
from ptolemy_tui.services import events, projects, status, tree
from ptolemy_tui.store.fields import path_text
from ptolemy_tui.store.models import Car, Container, ContainerItem, Directory, Event, File, Project, Scan, Worker, now
from ptolemy_tui.store.queries import bytes_contain, containers_by_state

PAGE = 200
# A worker reports once a second; three missed reports and it is shown as lost (its lease runs on for 40 s, but
# the operator should know at once). A worker silent for this long is no longer shown at all.
LOST_AFTER = 5.0
FORGET_AFTER = 600.0


def project(project_id: int) -> Project:
    return Project.get_by_id(project_id)


def _hostname() -> str:
    from ptolemy_tui.worker import settings  # the worker package names hosts; services may use it

    return settings.hostname()


# Workers ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerRow:
    key: str  # host:pid
    host: str
    pid: int
    state: str  # the worker's own state, or "lost" when its heartbeat stopped or its process is gone
    project_id: int | None
    container_id: int | None
    container: int | None  # the container's seq
    bytes_done: int
    bytes_total: int
    rate: float
    rss: int
    cpu: float
    staging_total: int
    staging_used: int
    staging_free: int
    space_needed: int
    heartbeat: float
    message: str | None
    lost: bool = False

    @property
    def busy(self) -> bool:
        return not self.lost and self.state in ("building", "waiting")


def worker_rows(project_id: int | None = None, *, at: float | None = None) -> list[WorkerRow]:
    """Workers that have not said they stopped and reported within FORGET_AFTER; those whose heartbeat is older
    than LOST_AFTER, or whose process on this host is gone, are marked lost at once."""
    from ptolemy_tui.worker import launch

    launch.reap()
    at = now() if at is None else at
    host = _hostname()
    query = Worker.select().where((Worker.state != "stopped") & (Worker.heartbeat_at > at - FORGET_AFTER))
    if project_id is not None:
        query = query.where(Worker.project == project_id)
    workers = list(query.order_by(Worker.host, Worker.pid))
    ids = [w.container_id for w in workers if w.container_id]
    seqs = dict(Container.select(Container.id, Container.seq).where(Container.id.in_(ids)).tuples()) if ids else {}
    rows = []
    for w in workers:
        gone = w.host == host and not psutil.pid_exists(w.pid)
        lost = gone or (w.heartbeat_at or 0) < at - LOST_AFTER
        rows.append(WorkerRow(
            key=f"{w.host}:{w.pid}", host=w.host, pid=w.pid, state="lost" if lost else w.state,
            project_id=w.project_id, container_id=w.container_id, container=seqs.get(w.container_id),
            bytes_done=w.bytes_done or 0, bytes_total=w.bytes_total or 0, rate=0.0 if lost else (w.rate or 0.0),
            rss=w.rss or 0, cpu=w.cpu_percent or 0.0, staging_total=w.staging_total or 0,
            staging_used=w.staging_used or 0, staging_free=w.staging_free or 0, space_needed=w.space_needed or 0,
            heartbeat=w.heartbeat_at or 0.0, message=w.message, lost=lost))
    return rows


def busy_workers() -> dict[str, int]:
    """Project name -> count of live workers doing something, for the quit question. Idle workers of a project
    that is no longer building are on their way out and do not count."""
    rows = [w for w in worker_rows() if not w.lost]
    names = dict(Project.select(Project.id, Project.name).tuples())
    building = {pid for (pid,) in Project.select(Project.id).where(Project.status == "building").tuples()}
    out: dict[str, int] = {}
    for w in rows:
        if not w.busy and w.project_id not in building:
            continue
        name = names.get(w.project_id, "-")
        out[name] = out.get(name, 0) + 1
    return out


# Projects ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Counts:
    files: int
    bytes: int
    containers: int
    pending: int
    building: int
    built: int
    failed: int
    cars: int


def cheap_counts(p: Project) -> Counts:
    """Counts without touching the File table: files and bytes come from the latest finished scan (a project of
    a million files is polled every second), containers and CARs from their indexed counts."""
    scan = (Scan.select(Scan.files, Scan.bytes).where((Scan.project == p.id) & (Scan.state == "done"))
            .order_by(Scan.id.desc()).first()) if p.status != "defined" else None
    by_state = containers_by_state(p.id)
    return Counts(files=scan.files if scan else 0, bytes=scan.bytes if scan else 0,
                  containers=sum(by_state.values()), pending=by_state.get("pending", 0),
                  building=by_state.get("building", 0), built=by_state.get("built", 0),
                  failed=by_state.get("failed", 0), cars=Car.select().where(Car.project == p.id).count())


@dataclass(frozen=True)
class ProjectRow:
    id: int
    name: str
    status: str
    message: str | None
    paused: bool
    files: int
    bytes: int
    containers: int
    built: int
    failed: int
    cars: int
    workers: int
    lost_workers: int
    load_type: str
    target_name: str


def project_rows() -> list[ProjectRow]:
    workers: dict[int, list[WorkerRow]] = {}
    for w in worker_rows():
        if w.project_id:
            workers.setdefault(w.project_id, []).append(w)
    rows = []
    for p in projects.list_projects():
        c = cheap_counts(p)
        mine = workers.get(p.id, [])
        rows.append(ProjectRow(
            id=p.id, name=p.name, status=p.status, message=p.message, paused=bool(p.paused), files=c.files,
            bytes=c.bytes, containers=c.containers, built=c.built, failed=c.failed, cars=c.cars,
            workers=sum(1 for w in mine if not w.lost), lost_workers=sum(1 for w in mine if w.lost),
            load_type=p.load_type, target_name=os.path.basename(p.target_dir.rstrip("/")) or p.target_dir))
    return rows


def project_ref(name: str) -> tuple[int, str, str]:
    """(id, name, target name) of the project called `name`."""
    p = projects.get(name)
    return p.id, p.name, os.path.basename(p.target_dir.rstrip("/")) or p.target_dir


def project_status(project_id: int) -> str:
    return project(project_id).status


def project_fields(project_id: int) -> dict[str, str]:
    """The project's settings as the form shows them (sizes in their shortest binary unit)."""
    from ptolemy_tui.core.sizes import format_size

    p = project(project_id)
    return {"name": p.name, "source": "s3" if is_s3(p.target_dir) else "local", "s3_endpoint": p.s3_endpoint or "",
            "s3_region": p.s3_region or "", "s3_profile": p.s3_profile or "",
            "s3_no_sign": "yes" if p.s3_no_sign else "no", "target_dir": p.target_dir, "staging_dir": p.staging_dir,
            "car_size": format_size(p.car_size), "shard_size": format_size(p.shard_size),
            "load_type": p.load_type, "profile": p.profile, "encryption": p.encryption, "workers": str(p.workers),
            "staging_budget": format_size(p.staging_budget) if p.staging_budget else ""}


# Staging ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StagingView:
    total: int
    used: int
    free: int
    source: str  # "workers" (their last report) or "disk" (read now by this process)
    path: str = ""  # the directory whose filesystem this is (disk readings)


def disk_usage(path: str) -> StagingView | None:
    """The filesystem holding `path` (or its nearest existing parent), read now."""
    if not path:
        return None
    probe = os.path.abspath(os.path.expanduser(path))
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return None
    return StagingView(usage.total, usage.used, usage.free, "disk", probe)


# Overview ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OverviewView:
    project: dict[str, Any]  # projects.summary: the same keys as `ptolemy project show --json`
    counts: Counts
    scan: dict[str, Any] | None
    workers: tuple[WorkerRow, ...]
    paused: bool = False
    dataset_root: str | None = None  # the current dataset root CID (`ptolemy dag`)


def overview(project_id: int) -> OverviewView:
    p = project(project_id)
    return OverviewView(project=projects.summary(p, with_counts=False), counts=cheap_counts(p),
                        scan=status.scan_report(status.latest_scan(p)), workers=tuple(worker_rows(p.id)),
                        paused=bool(p.paused), dataset_root=projects.dataset_root_cid(p))


# Scan tree --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TreeNode:
    kind: str  # "dir" or "file"
    id: int
    name: str
    bytes: int
    files: int
    error: str | None = None
    file_kind: str | None = None  # file, symlink, special, error, removed; None for a directory
    link_target: str | None = None
    entries: int | None = None  # a directory's direct entries (0: nothing to expand)
    cursor: tuple | None = None  # the sort key: tree_children(after=) of the last row gives the next page


@dataclass(frozen=True)
class ScanLine:
    id: int
    state: str
    entries: int
    files: int
    bytes: int
    errors: int
    skipped: int
    rate: float
    current_dir: str
    message: str | None


@dataclass(frozen=True)
class Problem:
    path: str
    kind: str
    reason: str  # "permission denied", "fifo": the reason only, no prefix


@dataclass(frozen=True)
class TreeView:
    root: TreeNode | None
    scan: ScanLine | None
    problems: tuple[Problem, ...] = ()


def tree_view(project_id: int, problems: int = 50) -> TreeView:
    root = Directory.get_or_none((Directory.project == project_id) & (Directory.parent.is_null()))
    scan = Scan.select().where(Scan.project == project_id).order_by(Scan.id.desc()).first()
    node = line = None
    if root is not None:
        node = TreeNode(kind="dir", id=root.id, name=path_text(root.name) or "/", bytes=root.total_bytes,
                        files=root.total_files, error=root.error, entries=root.file_count + root.dir_count)
    if scan is not None:
        line = ScanLine(id=scan.id, state=scan.state, entries=scan.entries, files=scan.files, bytes=scan.bytes,
                        errors=scan.errors, skipped=scan.skipped, rate=scan.rate or 0.0,
                        current_dir=path_text(scan.current_dir), message=scan.message)
    found: tuple[Problem, ...] = ()
    if line is not None and line.errors + line.skipped:
        found = tuple(scan_problems(project_id, problems))
    return TreeView(root=node, scan=line, problems=found)


def tree_children(project_id: int, directory_id: int, sort: str, offset: int, limit: int = PAGE,
                  text: str = "", after: tuple | None = None) -> list[TreeNode]:
    """One chunk of a directory's entries (directories and files together), sorted like ncdu; `text` keeps
    only entries whose name contains it; `after` (the last row's cursor) pages by key, not by offset."""
    rows = tree.children(project(project_id), directory_id, sort=sort, offset=offset, limit=limit, text=text,
                         after=after)
    out = []
    for r in rows:
        is_dir = r["kind"] == "dir"
        out.append(TreeNode(
            kind="dir" if is_dir else "file", id=r["id"], name=r["name"] or "?", bytes=int(r["size"] or 0),
            files=int(r["files"] or 0), error=r.get("error"), file_kind=None if is_dir else r["kind"],
            link_target=r.get("link_target"),
            entries=int(r.get("file_count") or 0) + int(r.get("dir_count") or 0) if is_dir else None,
            cursor=r["cursor"]))
    return out


def scan_problems(project_id: int, limit: int = 200) -> list[Problem]:
    p = project(project_id)
    out = [Problem(path=r["path"] + ("/" if r["kind"] == "dir" else ""), kind=r["kind"],
                   reason=r.get("error") or "unreadable") for r in tree.scan_errors(p, limit)]
    if len(out) < limit:
        out += [Problem(path=r["path"], kind="special", reason=_skip_reason(r.get("reason")))
                for r in tree.skipped(p, limit - len(out))]
    return out


def _skip_reason(reason: str | None) -> str:
    """'skipped: fifo' is stored by the scan; the view says 'skipped: fifo' once, not twice."""
    reason = (reason or "not a regular file").strip()
    while reason.lower().startswith("skipped:"):
        reason = reason[len("skipped:"):].strip()
    return f"skipped: {reason or 'not a regular file'}"


# Containers -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ContainerRow:
    id: int
    seq: int
    state: str
    predicted_size: int
    data_bytes: int
    items: int
    shards: int
    attempts: int
    error: str | None
    fill: float

    def json(self) -> dict[str, Any]:
        """The row as `ptolemy containers NAME --json` prints it (its stable keys)."""
        return {"id": self.id, "seq": self.seq, "state": self.state, "predicted_size": self.predicted_size,
                "data_bytes": self.data_bytes, "fill": round(self.fill, 6), "item_count": self.items,
                "shard_count": self.shards, "attempts": self.attempts, "error": self.error}


@dataclass(frozen=True)
class ContainersView:
    rows: tuple[ContainerRow, ...]
    count: int
    predicted: int
    car_size: int
    fill: float
    states: dict[str, int] = field(default_factory=dict)


def containers(project_id: int, text: str = "") -> ContainersView:
    p = project(project_id)
    query = (Container.select(Container.id, Container.seq, Container.state, Container.predicted_size,
                              Container.data_bytes, Container.item_count, Container.shard_count, Container.attempts,
                              Container.error)
             .where(Container.project == project_id))
    text = (text or "").strip()
    if text:
        if text.isdigit():
            query = query.where(Container.seq == int(text))
        else:
            query = query.where(Container.state.contains(text) | Container.error.contains(text))
    car_size = p.car_size or 0
    rows = tuple(ContainerRow(id=cid, seq=seq, state=state, predicted_size=predicted, data_bytes=data_bytes,
                              items=items, shards=shards, attempts=attempts, error=error,
                              fill=(predicted / car_size) if car_size else 0.0)
                 for cid, seq, state, predicted, data_bytes, items, shards, attempts, error
                 in query.order_by(Container.seq).tuples())
    total = (Container.select(peewee.fn.COUNT(Container.id), peewee.fn.COALESCE(peewee.fn.SUM(Container.predicted_size), 0))
             .where(Container.project == project_id).tuples().get())
    n, predicted = int(total[0]), int(total[1])
    states: dict[str, int] = {}
    for r in rows:
        states[r.state] = states.get(r.state, 0) + 1
    return ContainersView(rows=rows, count=n, predicted=predicted, car_size=car_size,
                          fill=predicted / (n * car_size) if n and car_size else 0.0, states=states)


@dataclass(frozen=True)
class ItemRow:
    seq: int
    car_path: str
    source: str
    offset: int
    length: int
    shard_index: int | None
    file_size: int


@dataclass(frozen=True)
class ItemsView:
    container: ContainerRow
    rows: tuple[ItemRow, ...]
    total: int  # items matching the filter


def container_items(container_id: int, offset: int = 0, limit: int = 1000, text: str = "",
                    after: int | None = None) -> ItemsView:
    """One page of a container's items: unfiltered, the seqs offset..offset+limit-1; filtered by `text`, the
    `limit` matches after seq `after`."""
    c = Container.get_by_id(container_id)
    car_size = c.project.car_size or 0
    head = ContainerRow(id=c.id, seq=c.seq, state=c.state, predicted_size=c.predicted_size, data_bytes=c.data_bytes,
                        items=c.item_count, shards=c.shard_count, attempts=c.attempts, error=c.error,
                        fill=c.predicted_size / car_size if car_size else 0.0)
    where = ContainerItem.container == container_id
    text = (text or "").strip()
    if text:
        # paths are stored as bytes; match the UTF-8 spelling of what the operator typed
        where &= bytes_contain(ContainerItem.car_path, text.encode("utf-8", "surrogateescape"))
    query = (ContainerItem.select(ContainerItem.seq, ContainerItem.car_path, ContainerItem.offset,
                                  ContainerItem.length, ContainerItem.shard_index, File.path, File.size)
             .join(File).where(where).order_by(ContainerItem.seq))
    if text:
        # Filtered, the matches' seqs have gaps: a page starts after the last seq of the page before (`after`;
        # None for the first page), along the (container, seq) index; `offset` only numbers the rows shown.
        page = (query.where(ContainerItem.seq > after) if after is not None else query).limit(limit)
        total = ContainerItem.select().where(where).count()
    else:
        # A container's items are numbered 0..n-1, so a page is a range of the (container, seq) index: no
        # OFFSET that counts past a million rows, and the total is the container's own count.
        page = query.where((ContainerItem.seq >= offset) & (ContainerItem.seq < offset + limit)).limit(limit)
        total = c.item_count
    rows = tuple(ItemRow(seq=i.seq, car_path=path_text(i.car_path), source=path_text(i.file.path), offset=i.offset,
                         length=i.length, shard_index=i.shard_index, file_size=i.file.size)
                 for i in page)
    return ItemsView(container=head, rows=rows, total=total)


# Build ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildView:
    name: str
    status: str
    paused: bool
    load_type: str
    message: str | None
    workers: tuple[WorkerRow, ...]
    states: dict[str, int]
    containers: int
    bytes_total: int
    bytes_done: int
    rate: float
    staging: StagingView | None
    staging_budget: int | None
    waiting: tuple[str, ...]  # keys of the workers waiting for staging space
    wait_reason: str  # the binding constraint of the first waiting worker, with its numbers
    started_at: float | None  # the first container's start in this build
    finished_at: float | None  # the last container's end, when nothing is left to build
    lost: int  # workers lost (heartbeat stale or process gone)
    source: str = ""  # where the workers read when it is not a local directory: s3://bucket[/prefix] (endpoint)


def build_view(project_id: int, *, at: float | None = None) -> BuildView:
    p = project(project_id)
    at = now() if at is None else at
    workers = tuple(worker_rows(p.id, at=at))
    live = [w for w in workers if not w.lost]
    by_state = containers_by_state(p)
    sums = dict(Container.select(Container.state, peewee.fn.COALESCE(peewee.fn.SUM(Container.data_bytes), 0))
                .where(Container.project == p.id).group_by(Container.state).tuples())
    in_flight = Container.select(peewee.fn.COALESCE(peewee.fn.SUM(Container.bytes_done), 0)).where(
        (Container.project == p.id) & (Container.state == "building")).scalar() or 0
    total = int(sum(sums.values()))
    done = min(total, int(sums.get("built", 0)) + int(in_flight))
    times = (Container.select(peewee.fn.MIN(Container.started_at), peewee.fn.MAX(Container.finished_at))
             .where(Container.project == p.id).tuples().get())
    left = by_state.get("pending", 0) + by_state.get("building", 0)
    started = times[0]
    finished = times[1] if (times[1] and not left and p.status != "building") else None
    # Staging: a report younger than LOST_AFTER from a live worker; otherwise this process reads the disk now.
    reporting = [w for w in live if w.staging_total]
    staging = None
    if reporting:
        latest = max(reporting, key=lambda w: w.heartbeat)
        staging = StagingView(latest.staging_total, latest.staging_used, latest.staging_free, "workers")
    else:
        staging = disk_usage(p.staging_dir)
    waiting = tuple(w for w in live if w.state == "waiting")
    return BuildView(
        name=p.name, status=p.status, paused=bool(p.paused), load_type=p.load_type, message=p.message,
        workers=workers, states=by_state, containers=sum(by_state.values()), bytes_total=total, bytes_done=done,
        rate=sum(w.rate for w in live if w.state == "building"), staging=staging, staging_budget=p.staging_budget,
        waiting=tuple(w.key for w in waiting), wait_reason=wait_reason(waiting[0].message) if waiting else "",
        started_at=started, finished_at=finished, lost=sum(1 for w in workers if w.lost),
        source=remote_source(p))


def remote_source(p: Project) -> str:
    """An S3 target with its endpoint, as the Build tab names it; "" for a local directory."""
    if not is_s3(p.target_dir):
        return ""
    return p.target_dir + (f" at {p.s3_endpoint}" if p.s3_endpoint else "") + (" (anonymous)" if p.s3_no_sign else "")


def wait_reason(message: str | None) -> str:
    """The worker's own words for why it waits (free space or the budget, with the numbers), without the
    'waiting for staging space:' that the banner already says."""
    text = (message or "").strip()
    prefix = "waiting for staging space:"
    if text.lower().startswith(prefix):
        text = text[len(prefix):].strip()
    return text


# CARs -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CarRow:
    id: int
    seq: int
    path: str
    payload_cid: str
    piece_cid: str
    car_size: int
    piece_size: int
    stale: str | None
    host: str
    built_at: float
    location: str = "staging"  # staging, moved (gone from its recorded path), inline (no file: served from sources)


@dataclass(frozen=True)
class CarsView:
    rows: tuple[CarRow, ...]
    count: int
    bytes: int


def cars(project_id: int, text: str = "", limit: int = 5000) -> CarsView:
    query = (Car.select(Car.id, Car.path, Car.payload_cid, Car.piece_cid, Car.car_size, Car.padded_piece_size,
                        Car.stale_reason, Car.host, Car.built_at, Container.seq)
             .join(Container).where(Car.project == project_id))
    text = (text or "").strip()
    if text:
        query = query.where(Car.path.contains(text) | Car.payload_cid.contains(text) | Car.piece_cid.contains(text))
    rows = tuple(CarRow(id=c.id, seq=c.container.seq, path=c.path, payload_cid=c.payload_cid, piece_cid=c.piece_cid,
                        car_size=c.car_size, piece_size=c.padded_piece_size, stale=c.stale_reason, host=c.host,
                        built_at=c.built_at, location=_location(c.path))
                 for c in query.order_by(Container.seq).limit(limit))
    totals = (Car.select(peewee.fn.COUNT(Car.id), peewee.fn.COALESCE(peewee.fn.SUM(Car.car_size), 0))
              .where(Car.project == project_id).tuples().get())
    return CarsView(rows=rows, count=int(totals[0]), bytes=int(totals[1]))


def _location(path: str) -> str:
    if not path:
        return "inline"
    return "staging" if os.path.exists(path) else "moved"


# Log --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventRow:
    id: int
    time: float
    level: str
    text: str


def events_after(project_id: int, after_id: int, limit: int = 500) -> list[EventRow]:
    return [EventRow(e.id, e.time, e.level, e.text) for e in events.recent(project_id, limit=limit, after_id=after_id)]


def last_event_id(project_id: int) -> int:
    return Event.select(peewee.fn.MAX(Event.id)).where(Event.project == project_id).scalar() or 0
