"""What the screens read from the store. Every function here runs in a thread worker, never on the event loop,
and returns plain data (dicts, lists) that the event loop renders.

Pipeline services are imported lazily: where one has not landed yet the store models are read directly.
"""
from __future__ import annotations

import importlib
import os
import shutil
from typing import Any, Callable

import peewee

from ptolemy_tui.store.fields import path_text
from ptolemy_tui.store.models import (Car, Container, ContainerItem, Directory, Event, File, Project, Scan, Worker,
                                      database)
from ptolemy_tui.store.queries import containers_by_state, live_workers

PAGE = 200


def service(name: str):
    """The pipeline service module `name`, or None when it is not there yet."""
    try:
        return importlib.import_module(f"ptolemy_tui.services.{name}")
    except ImportError:
        return None


def service_function(module: str, function: str) -> Callable | None:
    mod = service(module)
    return getattr(mod, function, None) if mod is not None else None


def db_call(fn: Callable, *args, **kwargs):
    """Run fn on this thread's own connection, closed afterwards (peewee keeps one connection per thread)."""
    db = database.obj
    if db is None:
        raise RuntimeError("the store is not open")
    if not db.is_closed():
        return fn(*args, **kwargs)
    with db.connection_context():
        return fn(*args, **kwargs)


def project(project_id: int) -> Project:
    return Project.get_by_id(project_id)


# Projects ---------------------------------------------------------------------------------------------------

def cheap_counts(p: Project) -> dict[str, int]:
    """projects.counts without touching the File table: files and bytes come from the latest finished scan (a
    project of a million files is polled every second), containers and CARs from their indexed counts."""
    scan = (Scan.select(Scan.files, Scan.bytes).where((Scan.project == p.id) & (Scan.state == "done"))
            .order_by(Scan.id.desc()).first()) if p.status != "defined" else None
    by_state = containers_by_state(p.id)
    return {
        "files": scan.files if scan else 0,
        "bytes": scan.bytes if scan else 0,
        "containers": sum(by_state.values()),
        "containers_pending": by_state.get("pending", 0),
        "containers_building": by_state.get("building", 0),
        "containers_built": by_state.get("built", 0),
        "containers_failed": by_state.get("failed", 0),
        "cars": Car.select().where(Car.project == p.id).count(),
    }


def projects_table() -> list[dict[str, Any]]:
    from ptolemy_tui.services import projects as projects_service

    rows = []
    workers: dict[int, int] = {}
    for w in running_workers():
        if w.project_id:
            workers[w.project_id] = workers.get(w.project_id, 0) + 1
    for p in projects_service.list_projects():
        counts = cheap_counts(p)
        rows.append({
            "id": p.id, "name": p.name, "status": p.status, "message": p.message, "paused": p.paused,
            "files": counts["files"], "bytes": counts["bytes"], "containers": counts["containers"],
            "built": counts["containers_built"], "failed": counts["containers_failed"], "cars": counts["cars"],
            "workers": workers.get(p.id, 0), "load_type": p.load_type,
            "target_name": os.path.basename(p.target_dir.rstrip("/")) or p.target_dir,
        })
    return rows


def running_workers(project: Project | None = None) -> list[Worker]:
    """Live workers; on this host only those whose process still exists (finished children reaped first)."""
    try:
        from ptolemy_tui.worker import launch, settings

        launch.reap()
        host = settings.hostname()
    except Exception:  # noqa: BLE001 - the worker package is optional for the views
        return live_workers(project)
    import psutil

    return [w for w in live_workers(project) if w.host != host or psutil.pid_exists(w.pid)]


def any_live_workers() -> dict[str, int]:
    """Project name -> count of workers doing something, for the quit question. Idle workers of a project that
    is no longer building are on their way out and do not count."""
    out: dict[str, int] = {}
    for w in running_workers():
        project = w.project if w.project_id else None
        if w.state not in ("building", "waiting") and (project is None or project.status != "building"):
            continue
        name = project.name if project else "-"
        out[name] = out.get(name, 0) + 1
    return out


def staging_free(path: str) -> dict[str, int] | None:
    probe = os.path.abspath(os.path.expanduser(path or ""))
    if not path:
        return None
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return None
    return {"total": usage.total, "used": usage.used, "free": usage.free, "path": probe}


# Overview ---------------------------------------------------------------------------------------------------

def overview(project_id: int) -> dict[str, Any]:
    from ptolemy_tui.services import projects as projects_service, status

    p = project(project_id)
    report = projects_service.summary(p, with_counts=False)
    report.update(cheap_counts(p))
    report["scan"] = status.scan_report(status.latest_scan(p))
    report["live_workers"] = [status.worker_report(w) for w in running_workers(p)]
    report["id"] = p.id
    report["paused"] = p.paused
    return report


# Scan tree --------------------------------------------------------------------------------------------------

def tree_root(project_id: int) -> dict[str, Any] | None:
    root = Directory.get_or_none((Directory.project == project_id) & (Directory.parent.is_null()))
    scan = Scan.select().where(Scan.project == project_id).order_by(Scan.id.desc()).first()
    doc: dict[str, Any] = {"root": None, "scan": None}
    if root is not None:
        doc["root"] = {"kind": "dir", "id": root.id, "name": path_text(root.name) or "/", "bytes": root.total_bytes,
                       "files": root.total_files, "error": root.error}
    if scan is not None:
        doc["scan"] = {"id": scan.id, "state": scan.state, "entries": scan.entries, "files": scan.files,
                       "bytes": scan.bytes, "errors": scan.errors, "skipped": scan.skipped, "rate": scan.rate,
                       "current_dir": path_text(scan.current_dir), "message": scan.message}
    return doc


def _normalise_child(row: dict[str, Any]) -> dict[str, Any]:
    kind = row.get("kind") or row.get("type") or ("dir" if row.get("is_dir") else "file")
    kind = "dir" if kind in ("dir", "directory", "d") else "file"
    name = row.get("name")
    if isinstance(name, (bytes, bytearray, memoryview)):
        name = path_text(bytes(name))
    size = row.get("bytes", row.get("total_bytes", row.get("size", 0))) or 0
    files = row.get("files", row.get("total_files", 1 if kind == "file" else 0)) or 0
    raw_kind = row.get("kind") or "file"
    entries = None
    if "file_count" in row or "dir_count" in row:
        entries = int(row.get("file_count") or 0) + int(row.get("dir_count") or 0)
    return {"kind": kind, "id": row.get("id"), "name": name or "?", "bytes": int(size or 0), "files": int(files or 0),
            "error": row.get("error"), "file_kind": None if kind == "dir" else raw_kind,
            "link_target": row.get("link_target"), "entries": entries}


def tree_children(project_id: int, directory_id: int, sort: str, offset: int, limit: int = PAGE) -> list[dict]:
    """One chunk of a directory's entries (directories and files together), sorted like ncdu."""
    children = service_function("tree", "children")
    if children is not None:
        rows = children(project(project_id), directory_id, sort=sort, offset=offset, limit=limit)
        return [_normalise_child(dict(r)) for r in rows]
    dirs = (Directory.select(peewee.Value("dir").alias("kind"), Directory.id, Directory.name,
                             Directory.total_bytes.alias("bytes"), Directory.total_files.alias("files"),
                             Directory.error, Directory.file_count, Directory.dir_count)
            .where((Directory.project == project_id) & (Directory.parent == directory_id)))
    files = (File.select(peewee.Value("file").alias("kind"), File.id, File.name, File.size.alias("bytes"),
                         peewee.Value(1).alias("files"), File.error, peewee.Value(0), peewee.Value(0))
             .where((File.project == project_id) & (File.directory == directory_id)))
    union = dirs + files
    order = [peewee.SQL("bytes").desc(), peewee.SQL("name")] if sort == "size" else [peewee.SQL("name")]
    rows = union.order_by(*order).limit(limit).offset(offset).dicts()
    return [_normalise_child(r) for r in rows]


def scan_errors(project_id: int, limit: int = 200) -> list[dict[str, Any]]:
    fn = service_function("tree", "scan_errors")
    if fn is not None:
        out = []
        p = project(project_id)
        rows = [dict(r) for r in fn(p, limit)]
        skipped = service_function("tree", "skipped")
        if skipped is not None and len(rows) < limit:
            rows += [{"path": r["path"], "kind": "special", "error": f"skipped: {r.get('reason') or 'not a regular file'}"}
                     for r in skipped(p, limit - len(rows))]
        for r in rows:
            r = dict(r)
            p = r.get("path")
            if isinstance(p, (bytes, bytearray, memoryview)):
                r["path"] = path_text(bytes(p))
            out.append({"path": r.get("path", "?"), "kind": r.get("kind", ""), "error": r.get("error") or "unreadable"})
        return out
    out = []
    for f in (File.select(File.path, File.kind, File.error)
              .where((File.project == project_id) & ((File.error.is_null(False)) | (File.kind.in_(("special", "error")))))
              .limit(limit)):
        out.append({"path": path_text(f.path), "kind": f.kind, "error": f.error or "skipped"})
    for d in (Directory.select(Directory.path, Directory.error)
              .where((Directory.project == project_id) & Directory.error.is_null(False)).limit(limit)):
        out.append({"path": path_text(d.path) + "/", "kind": "directory", "error": d.error})
    return out[:limit]


# Containers -------------------------------------------------------------------------------------------------

def containers(project_id: int, text: str = "") -> dict[str, Any]:
    p = project(project_id)
    query = (Container.select(Container.id, Container.seq, Container.state, Container.predicted_size,
                              Container.data_bytes, Container.item_count, Container.shard_count, Container.attempts,
                              Container.error, Container.bytes_done)
             .where(Container.project == project_id))
    text = (text or "").strip()
    if text:
        if text.isdigit():
            query = query.where(Container.seq == int(text))
        else:
            query = query.where(Container.state.contains(text) | Container.error.contains(text))
    car_size = p.car_size or 0
    rows = [{"id": cid, "seq": seq, "state": state, "predicted_size": predicted, "data_bytes": data_bytes,
             "items": items, "shards": shards, "attempts": attempts, "error": error,
             "fill": (predicted / car_size) if car_size else 0.0}
            for cid, seq, state, predicted, data_bytes, items, shards, attempts, error, _done
            in query.order_by(Container.seq).tuples()]
    total = (Container.select(peewee.fn.COUNT(Container.id), peewee.fn.COALESCE(peewee.fn.SUM(Container.predicted_size), 0))
             .where(Container.project == project_id).tuples().get())
    n, predicted = int(total[0]), int(total[1])
    return {"rows": rows, "count": n, "predicted": predicted, "car_size": p.car_size,
            "fill": predicted / (n * p.car_size) if n and p.car_size else 0.0}


def container_items(container_id: int, offset: int = 0, limit: int = 1000) -> dict[str, Any]:
    c = Container.get_by_id(container_id)
    query = (ContainerItem.select(ContainerItem.seq, ContainerItem.car_path, ContainerItem.offset,
                                  ContainerItem.length, ContainerItem.shard_index, File.path, File.size)
             .join(File).where(ContainerItem.container == container_id).order_by(ContainerItem.seq))
    rows = []
    for item in query.limit(limit).offset(offset):
        rows.append({"seq": item.seq, "car_path": path_text(item.car_path), "source": path_text(item.file.path),
                     "offset": item.offset, "length": item.length, "shard_index": item.shard_index,
                     "file_size": item.file.size})
    total = ContainerItem.select().where(ContainerItem.container == container_id).count()
    return {"container": {"id": c.id, "seq": c.seq, "state": c.state, "predicted_size": c.predicted_size,
                          "items": c.item_count, "shards": c.shard_count, "error": c.error},
            "rows": rows, "total": total}


# Build ------------------------------------------------------------------------------------------------------

def build(project_id: int) -> dict[str, Any]:
    p = project(project_id)
    workers = []
    seqs = {}
    live = running_workers(p)
    ids = [w.container_id for w in live if w.container_id]
    if ids:
        seqs = dict(Container.select(Container.id, Container.seq).where(Container.id.in_(ids)).tuples())
    for w in live:
        workers.append({"key": f"{w.host}:{w.pid}", "host": w.host, "pid": w.pid, "state": w.state,
                        "container": seqs.get(w.container_id), "bytes_done": w.bytes_done,
                        "bytes_total": w.bytes_total, "rate": w.rate, "rss": w.rss, "cpu": w.cpu_percent,
                        "staging_total": w.staging_total, "staging_used": w.staging_used,
                        "staging_free": w.staging_free, "heartbeat": w.heartbeat_at, "message": w.message})
    by_state = containers_by_state(p)
    sums = (Container.select(peewee.fn.COALESCE(peewee.fn.SUM(Container.predicted_size), 0),
                             peewee.fn.COALESCE(peewee.fn.SUM(Container.data_bytes), 0))
            .where(Container.project == p).tuples().get())
    built_bytes = (Container.select(peewee.fn.COALESCE(peewee.fn.SUM(Container.data_bytes), 0))
                   .where((Container.project == p) & (Container.state == "built")).scalar()) or 0
    in_flight = sum(w["bytes_done"] for w in workers if w["state"] == "building")
    total_bytes = int(sums[1])
    done = min(total_bytes, int(built_bytes) + in_flight)
    progress = None
    fn = service_function("build", "build_progress")
    if fn is not None:
        try:
            progress = fn(p)
        except Exception:  # noqa: BLE001 - the view falls back to its own sums
            progress = None
    staging = None
    reporting = [w for w in workers if w["staging_total"]]
    if reporting:
        latest = max(reporting, key=lambda w: w["heartbeat"])
        staging = {"total": latest["staging_total"], "used": latest["staging_used"], "free": latest["staging_free"],
                   "source": "workers"}
    else:
        usage = staging_free(p.staging_dir)
        if usage:
            staging = {"total": usage["total"], "used": usage["used"], "free": usage["free"], "source": "disk"}
    rate = sum(w["rate"] or 0 for w in workers if w["state"] == "building")
    if isinstance(progress, dict):  # the build service's view wins where it has one
        total_bytes = int(progress.get("bytes_total", total_bytes))
        done = int(progress.get("bytes_done", done))
        rate = float(progress.get("rate", rate) or 0.0)
        if progress.get("staging"):
            stg = progress["staging"]
            staging = {"total": stg["total"], "used": stg["used"], "free": stg["free"], "source": "workers"}
    return {
        "name": p.name, "status": p.status, "paused": p.paused, "load_type": p.load_type, "message": p.message,
        "workers": workers, "states": by_state, "containers": sum(by_state.values()),
        "bytes_total": total_bytes, "bytes_done": done,
        "rate": rate,
        "staging": staging, "staging_budget": p.staging_budget, "progress": progress,
        "waiting": [w["key"] for w in workers if w["state"] == "waiting"],
    }


# CARs -------------------------------------------------------------------------------------------------------

def cars(project_id: int, text: str = "", limit: int = 5000) -> dict[str, Any]:
    query = (Car.select(Car.id, Car.path, Car.payload_cid, Car.piece_cid, Car.car_size, Car.padded_piece_size,
                        Car.stale_reason, Container.seq)
             .join(Container).where(Car.project == project_id))
    text = (text or "").strip()
    if text:
        query = query.where(Car.path.contains(text) | Car.payload_cid.contains(text) | Car.piece_cid.contains(text))
    rows = [{"id": c.id, "seq": c.container.seq, "path": c.path, "payload_cid": c.payload_cid,
             "piece_cid": c.piece_cid, "car_size": c.car_size, "piece_size": c.padded_piece_size,
             "stale": c.stale_reason} for c in query.order_by(Container.seq).limit(limit)]
    totals = (Car.select(peewee.fn.COUNT(Car.id), peewee.fn.COALESCE(peewee.fn.SUM(Car.car_size), 0))
              .where(Car.project == project_id).tuples().get())
    return {"rows": rows, "count": int(totals[0]), "bytes": int(totals[1])}


# Log --------------------------------------------------------------------------------------------------------

def events_after(project_id: int, after_id: int, limit: int = 500) -> list[dict[str, Any]]:
    from ptolemy_tui.services import events

    return [{"id": e.id, "time": e.time, "level": e.level, "text": e.text}
            for e in events.recent(project_id, limit=limit, after_id=after_id)]


def last_event_id(project_id: int) -> int:
    return Event.select(peewee.fn.MAX(Event.id)).where(Event.project == project_id).scalar() or 0
