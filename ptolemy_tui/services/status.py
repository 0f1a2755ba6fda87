"""One report of where a project stands: its summary, the latest scan, the build and its live workers."""
from __future__ import annotations

from typing import Any

from ptolemy_tui.services import projects
from ptolemy_tui.store.fields import path_text
from ptolemy_tui.store.models import Project, Scan, Worker
from ptolemy_tui.store.queries import live_workers

SCAN_KEYS = ("state", "entries", "files", "directories", "symlinks", "skipped", "errors", "bytes", "rate",
             "added", "changed", "removed", "started_at", "finished_at", "message")
WORKER_KEYS = ("host", "pid", "state", "bytes_done", "bytes_total", "rate", "staging_total", "staging_used",
               "staging_free", "rss", "cpu_percent", "message", "started_at", "heartbeat_at")


def latest_scan(project: Project) -> Scan | None:
    return Scan.select().where(Scan.project == project).order_by(Scan.id.desc()).first()


def scan_report(scan: Scan | None) -> dict[str, Any] | None:
    if scan is None:
        return None
    doc = {key: getattr(scan, key) for key in SCAN_KEYS}
    doc["current_dir"] = path_text(scan.current_dir)
    return doc


def worker_report(worker: Worker) -> dict[str, Any]:
    doc = {key: getattr(worker, key) for key in WORKER_KEYS}
    doc["container_id"] = worker.container_id
    doc["project"] = worker.project.name if worker.project_id else None
    return doc


SCAN_SAMPLES = 20  # unreadable and skipped entries listed in the report; the tree view pages through all


def project_report(project: Project) -> dict[str, Any]:
    from ptolemy_tui.services import tree  # the scan's detail lists

    doc = projects.summary(project)
    doc["scan"] = scan = scan_report(latest_scan(project))
    if scan is not None:
        scan["error_paths"] = tree.scan_errors(project, SCAN_SAMPLES) if scan["errors"] else []
        scan["skipped_paths"] = tree.skipped(project, SCAN_SAMPLES) if scan["skipped"] else []
    doc["live_workers"] = [worker_report(w) for w in live_workers(project)]
    return doc
