"""Scan and containerize as jobs: one per project at a time, run by whichever process took it (`ptolemy scan` in
a terminal, or a detached `ptolemy scan` the TUI started so that the TUI's own process stays I/O-light and the
job survives closing it).

The project row is the job's slot: the transition into scanning or containerizing writes the owner ("host:pid"),
the transition out clears it (store/transitions). While the job runs, a watcher thread in its process looks for a
cancel asked through the store (`cancel` from another host) and, on PostgreSQL, renews a heartbeat; on the job's
own host `cancel` sends it SIGTERM instead, which cancels at once. A job whose process is gone (the pid on this
host, else a heartbeat older than JOB_STALE) is abandoned by the next one: its project goes to failed with a
message, never stuck in scanning.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import psutil

from ptolemy_tui.core.states import ProjectStatus, ScanState
from ptolemy_tui.errors import UsageError
from ptolemy_tui.services import events
from ptolemy_tui.store import transitions
from ptolemy_tui.store.db import is_postgres
from ptolemy_tui.store.models import Event, Project, Scan, database, now
from ptolemy_tui.worker import launch

log = logging.getLogger(__name__)

JOB_STALE = 60.0  # seconds without a heartbeat before a job on another host is taken as dead
CANCEL_POLL = 1.0  # how often a running job looks for a cancel
HEARTBEAT_EVERY = 10.0
KINDS = {ProjectStatus.SCANNING: "scan", ProjectStatus.CONTAINERIZING: "containerize"}


def owner_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_alive(owner: str, heartbeat_at: float | None, *, clock: Callable[[], float] = now) -> bool:
    """A job on this host is alive while its process is (a zombie is not); one on another host while its
    heartbeat is fresh."""
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            return psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False
    return heartbeat_at is not None and clock() - heartbeat_at < JOB_STALE


def recover_dead_job(project: Project) -> bool:
    """Abandon the project's scan or containerize if its process is gone; True if it did."""
    row = (Project.select(Project.status, Project.job_owner, Project.job_at).where(Project.id == project.id)
           .tuples().first())
    if row is None or row[0] not in KINDS or row[1] is None or is_alive(row[1], row[2]):
        return False
    status, owner = row[0], row[1]
    message = f"the previous {KINDS[status]} was interrupted (its process {owner} is gone): run it again"
    if transitions.abandon_job(project, owner, message):
        events.record(project, message, "warning")
        return True
    return False


@contextlib.contextmanager
def watched(project: Project, cancel: threading.Event) -> Iterator[None]:
    """Run the body as the project's job: a cancel asked through the store sets `cancel`."""
    owner = owner_token()
    stop = threading.Event()
    postgres = is_postgres()

    def watch() -> None:
        renewed = time.monotonic()
        try:
            while not stop.wait(CANCEL_POLL):
                try:
                    # SQLite: read only (a write would queue behind the job's own long write transaction, and
                    # liveness there is the pid on this host); PostgreSQL: the heartbeat other hosts judge by.
                    if postgres and time.monotonic() - renewed >= HEARTBEAT_EVERY:
                        asked = transitions.renew_job(project.id, owner)
                        renewed = time.monotonic()
                    else:
                        asked = transitions.job_cancel_asked(project.id, owner)
                except Exception as exc:  # noqa: BLE001 - a store hiccup must not end the job; the next poll retries
                    log.warning("job watcher: %s", exc)
                    continue
                if asked:
                    cancel.set()
        finally:
            database.close()

    thread = threading.Thread(target=watch, name=f"job-watch-{project.id}", daemon=True)
    thread.start()
    restore = _on_sigterm(cancel.set)
    try:
        yield
    finally:
        stop.set()
        restore()
        thread.join(timeout=5)


def _on_sigterm(action: Callable[[], None]) -> Callable[[], None]:
    """In the main thread (the `ptolemy scan|containerize` process), SIGTERM cancels the job cleanly; returns
    what puts the previous handler back (nothing to do where signals cannot be handled: a TUI's thread)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: action())
    return lambda: signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def cancel(project: Project) -> str | None:
    """Ask the project's running scan or containerize to stop; returns which ("scan"/"containerize"), or None
    when none runs. A job whose process is gone is abandoned instead.

    On the job's host, SIGTERM (its handler cancels at once) and nothing written: on SQLite the pack holds the
    write lock until it ends. Elsewhere (PostgreSQL, several hosts) the request goes through the store."""
    if recover_dead_job(project):
        return None
    row = Project.select(Project.status, Project.job_owner).where(Project.id == project.id).tuples().first()
    if row is None or row[0] not in KINDS:
        return None
    kind = KINDS[ProjectStatus(row[0])]
    host, _, pid = (row[1] or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(pid), signal.SIGTERM)
        return kind
    if transitions.request_job_cancel(project) is None:
        return None
    events.record(project, f"{kind} cancel asked of {row[1] or 'its process'}", "warning")
    return kind


# --- detached jobs (the TUI's way) ---------------------------------------------------------------------------

# What the TUI runs in a process of its own: the project's job (scan, containerize) and the other heavy reads
# (verify re-hashes every CAR; dag encodes a node per directory), which hold no slot and report in JSON.
DETACHED = ("scan", "containerize", "verify", "dag")


@dataclass
class JobHandle:
    """A detached `ptolemy scan|containerize|verify|dag` this process started."""

    project_id: int
    project_name: str
    kind: str
    proc: subprocess.Popen
    log_path: str
    report_path: str | None = None

    def finished(self) -> bool:
        return self.proc.poll() is not None


def start(project: Project, kind: str, *, reset: bool = False, discard_built: bool = False) -> JobHandle:
    """Start `ptolemy scan NAME`, `containerize NAME [--reset]`, `verify NAME --json` or `dag NAME --json`
    detached. A scan or pack refused for a job already running is answered now rather than from a log."""
    if kind not in DETACHED:
        raise ValueError(f"job kind {kind!r}")
    if kind in KINDS.values():
        recover_dead_job(project)
        project = Project.get_by_id(project.id)
        if project.status in KINDS:
            raise UsageError(f"project {project.name} is {project.status} right now: wait for it, or cancel it "
                             f"(`ptolemy cancel {project.name}`)")
    argv = [kind, project.name] + (["--reset"] if reset else []) + (["--discard-built"] if discard_built else [])
    report = kind in ("verify", "dag")
    proc, log_path, report_path = launch.spawn_job(project.name, kind, argv + (["--json"] if report else []),
                                                   report=report)
    return JobHandle(project.id, project.name, kind, proc, log_path, report_path)


def outcome(handle: JobHandle) -> tuple[bool, str]:
    """(succeeded, one line for the operator) of a finished detached job."""
    code = handle.proc.returncode
    doc = _report(handle)
    if handle.kind == "verify" and doc is not None:
        return not code, verify_summary(doc["cars"])
    if code == 0:
        return True, _success_line(handle, doc)
    said = _last_error_line(handle.log_path)
    if said:
        return False, said
    message = Project.select(Project.message).where(Project.id == handle.project_id).scalar()
    return False, message or f"{handle.kind} of {handle.project_name} ended with exit status {code}"


def verify_summary(cars: list[dict]) -> str:
    """`ptolemy verify`'s report in one line: failures first, CARs moved off staging counted apart."""
    bad = [r for r in cars if r.get("ok") is False]
    moved = sum(1 for r in cars if r.get("ok") is None)
    note = f"; {moved} moved off staging, not verified (ptolemy verify NAME --where DIR)" if moved else ""
    if bad:
        first = bad[0]
        problems = "; ".join(first.get("problems") or [])
        return f"verify: {len(bad)} of {len(cars)} CARs FAILED (container {first['container']}: {problems}){note}"
    return f"verify: {len(cars) - moved} of {len(cars)} CARs ok{note}"


def _report(handle: JobHandle) -> dict | None:
    if not handle.report_path:
        return None
    try:
        with open(handle.report_path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):  # nothing printed (it failed before its report)
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(handle.report_path)


def _success_line(handle: JobHandle, doc: dict | None) -> str:
    if handle.kind == "dag" and doc is not None:
        return f"dataset root {doc['root_cid']} (DAG CAR {doc['piece_cid']})"
    if handle.kind == "scan":
        scan = Scan.select().where(Scan.project == handle.project_id).order_by(Scan.id.desc()).first()
        if scan is None:
            return "scan done"
        message = scan.message or ""
        if scan.state == ScanState.DONE and message.startswith("rescan:"):
            return message
        return f"scan {scan.state}: {scan.files:,} files" + (f" ({message})" if message else "")
    packed = (Event.project == handle.project_id) & Event.text.startswith("containerized")
    text = Event.select(Event.text).where(packed).order_by(Event.id.desc()).scalar()
    return text or "containerized"


def _last_error_line(log_path: str) -> str | None:
    """The one-line error the command printed last (`ptolemy: …`), from the end of its log."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 8192))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("ptolemy: "):
            return line[len("ptolemy: "):].strip()
    return None
