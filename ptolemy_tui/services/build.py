"""Builds: start (spawning detached worker processes), pause, resume, cancel, retry, and the live progress the
CLI's `--wait` and the TUI show. Workers are told what to do only through the store (Project.status,
Project.paused, container claims), so these work the same for workers on other hosts.

Semantics:
- pause: workers finish the container in hand, then idle (registered, heartbeat on) until resume or cancel.
- cancel: the build stops now. In-flight containers go back to pending, their partial files are removed (here
  and, on other hosts, by their workers, which notice within a second that their claim is gone and stop); built
  CARs stay. The project returns to "containerized": `ptolemy build` continues where it stopped.
- retry: failed containers go back to pending (attempt count and last error kept; every failure's message is in
  the event log). Running workers pick them up; otherwise `ptolemy build` does.
"""
from __future__ import annotations

import os
from typing import Any

import peewee
import psutil

from ptolemy_tui.core.sources import is_s3
from ptolemy_tui.core.sizes import format_size
from ptolemy_tui.core.states import TODO, ContainerState, ProjectStatus, WorkerState
from ptolemy_tui.errors import OperationFailed, UsageError
from ptolemy_tui.services import events, projects
from ptolemy_tui.store import transitions
from ptolemy_tui.store.models import Car, Container, Project, Worker, database, now
from ptolemy_tui.store.queries import containers_by_state, live_workers
from ptolemy_tui.worker import launch, settings, staging, supervisor
from ptolemy_tui.worker.staging import human as _h

MODES = ("blitz", "serial", "inline")


def _project(project: Project | str) -> Project:
    if isinstance(project, str):
        return projects.get(project)
    return Project.get_by_id(project.id)  # fresh: workers change it behind our back


def running_workers(project: Project) -> list[Worker]:
    """Live workers of the project: a fresh heartbeat, and on this host a process that still exists."""
    host = settings.hostname()
    return [w for w in live_workers(project) if w.host != host or psutil.pid_exists(w.pid)]


def _todo_sizes(project: Project) -> list[int]:
    return [size for (size,) in Container.select(Container.predicted_size).where(
        (Container.project == project.id) & (Container.state.in_(TODO))).tuples()]


def check_space(project: Project, mode: str) -> str | None:
    """Why the staging disk cannot take this build, with the numbers; None when it can."""
    sizes = _todo_sizes(project)
    if not sizes or mode == "inline":  # inline CARs are never written: their plans live in the store
        return None
    disk = staging.disk_usage(project.staging_dir)
    reserve = settings.staging_reserve(disk.total)
    budget = project.staging_budget
    if mode == "blitz":
        total = sum(sizes)
        if total > disk.free:
            return (f"staging {project.staging_dir} is short: {len(sizes)} CARs need {_h(total)} ({total:,} bytes), "
                    f"free {_h(disk.free)} ({disk.free:,} bytes); free space, use --mode serial, or --force")
        if budget is not None and total > budget:
            return (f"{len(sizes)} CARs need {_h(total)}, over the staging budget {format_size(budget)}; "
                    f"use --mode serial, raise --staging-budget, or --force")
        return None
    largest = max(sizes)
    if largest + reserve > disk.total:
        return (f"staging {project.staging_dir} can never hold the largest CAR: it needs {_h(largest)} + reserve "
                f"{_h(reserve)}, the filesystem is {_h(disk.total)}; use a bigger staging disk or --force")
    if budget is not None and largest > budget:
        return (f"the largest CAR needs {_h(largest)}, over the staging budget {format_size(budget)}; "
                f"raise --staging-budget or --force")
    return None


def start_build(project: Project | str, *, mode: str | None = None, workers: int | None = None,
                force: bool = False) -> list[int]:
    """Start detached workers for every pending container; returns their pids."""
    project = _project(project)
    projects.require_step(project, "build")
    mode = (mode or project.load_type or "blitz").lower()
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r} is unknown: use blitz, serial or inline")
    count = workers if workers is not None else project.workers
    if not isinstance(count, int) or not 1 <= count <= 256:
        raise UsageError(f"--workers {count!r} is out of range: give a whole number from 1 to 256")
    running = running_workers(project)
    # A build that is over (the project is no longer "building") may leave idle workers for a poll interval
    # before they notice and exit: they are on their way out, not a running build.
    lingering = [w for w in running if project.status != ProjectStatus.BUILDING and w.state == WorkerState.IDLE]
    running = [w for w in running if w not in lingering]
    supervised = is_supervised(project)
    if running and not supervised:
        # Workers that no live supervisor keeps (`ptolemy worker` on other hosts, or a supervisor killed -9):
        # starting more here would double them.
        raise UsageError(f"a build of {project.name} is already running with {len(running)} worker(s): "
                         f"`ptolemy status {project.name}`, or `ptolemy cancel {project.name}` first")
    if supervised:
        raise UsageError(f"a build of {project.name} is already running: `ptolemy build {project.name} --workers N` "
                         f"changes its worker count, `ptolemy cancel {project.name}` stops it")
    # No worker is alive, so a container still building lost its worker (killed, host down): requeue it now
    # rather than waiting for its lease to expire.
    orphans = transitions.requeue_orphans(project)
    by_state = containers_by_state(project)
    todo = by_state.get(ContainerState.PENDING, 0)
    if not todo:
        if by_state.get(ContainerState.FAILED):
            raise UsageError(f"nothing to build in {project.name}: {by_state['failed']} container(s) failed; "
                             f"`ptolemy retry {project.name}` requeues them")
        if not sum(by_state.values()):
            raise UsageError(f"project {project.name} has no containers: `ptolemy containerize {project.name}` first")
        stale = Car.select().where((Car.project == project.id) & Car.stale_reason.is_null(False)).count()
        if stale:
            raise UsageError(f"nothing to build in {project.name}, but {stale} built CAR(s) are stale (sources changed "
                             f"since the build): `ptolemy scan {project.name}`, then `ptolemy containerize "
                             f"{project.name}` packs what changed, and `ptolemy build {project.name}` builds it")
        raise UsageError(f"nothing to build in {project.name}: all {by_state.get('built', 0)} containers are built; "
                         f"next: `ptolemy manifest {project.name}`")
    problem = check_space(project, mode)
    if problem and not force:
        raise OperationFailed(f"refusing to build {project.name}: {problem}")
    spawn = 1 if mode == "serial" else min(count, todo)
    token = supervisor.new_token()
    with database.atomic():
        # One build per project, decided by the store: this compare-and-set succeeds for exactly one of two
        # `build` commands started at once (the loser sees the winner's supervisor and is refused).
        if not transitions.start_build(project, mode, supervisor_token=token, workers=spawn,
                                       stale_after=supervisor.SUPERVISOR_STALE):
            raise UsageError(f"a build of {project.name} was started at the same moment: `ptolemy status "
                             f"{project.name}` follows it")
        events.record(project, f"build started: {mode}, {spawn} worker(s), {todo} container(s) to build"
                               + (f" from {project.target_dir}" if is_s3(project.target_dir) else "")
                               + (f", {orphans} orphaned container(s) requeued" if orphans else "")
                               + (f" (forced past: {problem})" if problem else ""),
                      level="warning" if problem else "info")
    os.makedirs(staging.project_dir(project.staging_dir, project.name), exist_ok=True)
    # Register the workers before they exist, so that they are in the live view (and a second `build` is
    # refused) from this moment, not from when each child has imported its modules.
    host = settings.hostname()
    # Rows of earlier builds' workers (stopped, dead, or idle on their way out) would only pile up.
    ids = transitions.preregister_workers(project.id, host, spawn, keep=[w.id for w in lingering])
    launch.spawn_supervisor(project.name, token, ids)
    return _wait_for_pids(ids)


def _wait_for_pids(ids: list[int], timeout: float = 30.0) -> list[int]:
    """The pids the supervisor gave the pre-registered workers (it starts them within a second or so)."""
    import time

    me = os.getpid()
    deadline = time.monotonic() + timeout
    while True:
        pids = [pid for (pid,) in Worker.select(Worker.pid).where(Worker.id.in_(ids)).order_by(Worker.id).tuples()]
        if all(pid != me for pid in pids) or time.monotonic() > deadline:
            return [pid for pid in pids if pid != me]
        time.sleep(0.05)


def is_supervised(project: Project | str) -> bool:
    """A build of the project is running under a live supervisor (its heartbeat is fresh)."""
    project = _project(project)
    return (project.status == ProjectStatus.BUILDING and project.supervisor is not None
            and (project.supervised_at or 0) >= now() - supervisor.SUPERVISOR_STALE)


def set_build_workers(project: Project | str, count: int) -> int:
    """Change the number of workers a running build keeps alive (its supervisor adds or stops workers)."""
    project = _project(project)
    if not isinstance(count, int) or not 1 <= count <= 256:
        raise UsageError(f"--workers {count!r} is out of range: give a whole number from 1 to 256")
    changed = Project.update(build_workers=count, updated_at=now()).where(
        (Project.id == project.id) & (Project.status == ProjectStatus.BUILDING) & Project.supervisor.is_null(False)).execute()
    if not changed:
        raise UsageError(f"no build of {project.name} is running: `ptolemy build {project.name} --workers {count}` "
                         "starts one")
    if project.load_type == "serial" and count > 1:
        events.record(project, f"worker count set to {count}; a serial build still builds one CAR at a time")
    else:
        events.record(project, f"worker count set to {count}")
    return count


def add_workers(project: Project | str, count: int = 1) -> list[int]:
    """More detached workers for a running build (blitz only: serial builds one CAR at a time anyway)."""
    project = _project(project)
    if project.status != ProjectStatus.BUILDING:
        raise UsageError(f"cannot add workers to {project.name}: no build is running (it is {project.status})")
    if project.load_type == "serial":
        raise UsageError(f"{project.name} builds serially, one CAR at a time: more workers would only wait")
    if not 1 <= count <= 256:
        raise UsageError(f"cannot add {count} workers: give a whole number from 1 to 256")
    if is_supervised(project):  # its supervisor starts them (and keeps them alive)
        set_build_workers(project, min(256, (project.build_workers or 0) + count))
        return []
    ids = transitions.preregister_workers(project.id, settings.hostname(), count, keep=None)
    pids = launch.spawn_workers(project.name, ids)
    for worker_id, pid in zip(ids, pids):
        Worker.update(pid=pid).where((Worker.id == worker_id) & (Worker.message == "starting")).execute()
    events.record(project, f"{count} worker(s) added to the build")
    return pids


def pause(project: Project | str) -> None:
    """Workers finish the container in hand, then wait."""
    project = _project(project)
    transitions.pause_build(project)
    events.record(project, "build paused: workers finish their current container, then wait")


def resume(project: Project | str) -> None:
    project = _project(project)
    transitions.resume_build(project)
    events.record(project, "build resumed")


def cancel(project: Project | str) -> dict[str, int]:
    """Stop the build: in-flight containers back to pending, partial files removed, workers exit."""
    project = _project(project)
    done = transitions.cancel_build(project)
    events.record(project, f"build cancelled: {len(done.requeued)} in-flight container(s) back to pending, "
                           f"{done.built} of {done.total} built", level="warning")
    for box in done.requeued:  # the workers remove theirs too; this covers workers that are already dead
        # Only the generations cancelled here: a later build's claim (a higher generation) is not ours to touch.
        for part in staging.expired_parts(project.staging_dir, project.name, box.seq, box.generation + 1):
            try:
                os.unlink(part)
            except FileNotFoundError:
                pass
            except OSError as exc:
                events.record(project, f"could not remove the partial file {part}: {exc}", "warning")
    return {"requeued": len(done.requeued), "workers": len(running_workers(project))}


def retry(project: Project | str) -> int:
    """Failed containers back to pending; returns how many."""
    project = _project(project)
    n = transitions.requeue_failed(project)
    if n:
        events.record(project, f"{n} failed container(s) requeued")
    return n


def stop_and_wait(project: Project | str, timeout: float) -> int:
    """Cancel the project's build when one runs, then wait for its workers; returns how many are still alive."""
    project = _project(project)
    if project.status == "building":
        cancel(project)
    return wait_for_workers(project, timeout)


def wait_for_workers(project: Project | str, timeout: float) -> int:
    """Wait until no live worker of the project is left (after a cancel); returns how many are still alive."""
    import time

    project = _project(project)
    deadline = time.monotonic() + timeout
    while True:
        launch.reap()
        left = running_workers(project)
        if not left or time.monotonic() > deadline:
            return len(left)
        time.sleep(0.25)


def build_progress(project: Project | str) -> dict[str, Any]:
    """Everything a progress view needs, from one look at the store."""
    project = _project(project)
    launch.reap()
    by_state = containers_by_state(project)
    sums = dict(Container.select(Container.state, peewee.fn.COALESCE(peewee.fn.SUM(Container.data_bytes), 0)).where(
        Container.project == project.id).group_by(Container.state).tuples())
    in_flight = Container.select(peewee.fn.COALESCE(peewee.fn.SUM(Container.bytes_done), 0)).where(
        (Container.project == project.id) & (Container.state == ContainerState.BUILDING)).scalar() or 0
    bytes_total = int(sum(sums.values()))
    bytes_done = int(sums.get(ContainerState.BUILT, 0)) + int(in_flight)
    bytes_failed = int(sums.get(ContainerState.FAILED, 0))
    workers = running_workers(project)
    rate = sum(w.rate for w in workers if w.state == WorkerState.BUILDING)
    remaining = max(0, bytes_total - bytes_done - bytes_failed)
    latest = (Worker.select().where(Worker.project == project.id).order_by(Worker.heartbeat_at.desc()).first())
    stg = None
    if latest is not None and latest.staging_total:
        stg = {"total": latest.staging_total, "used": latest.staging_used, "free": latest.staging_free,
               "reported_at": latest.heartbeat_at, "host": latest.host}
    failed = [{"seq": c.seq, "attempts": c.attempts, "error": c.error} for c in Container.select(
        Container.seq, Container.attempts, Container.error).where(
        (Container.project == project.id) & (Container.state == ContainerState.FAILED)).order_by(Container.seq)]
    return {
        "project": project.name,
        "status": project.status,
        "message": project.message,
        "paused": bool(project.paused),
        "mode": project.load_type,
        "containers": {state.value: by_state.get(state, 0) for state in ContainerState}
        | {"total": sum(by_state.values())},
        "bytes_total": bytes_total,
        "bytes_done": bytes_done,
        "bytes_failed": bytes_failed,
        "rate": rate,
        "eta_seconds": (remaining / rate) if rate > 0 else None,
        "staging": stg,
        "workers": [_worker_doc(w) for w in workers],
        "waiting": [{"host": w.host, "pid": w.pid, "needed": w.space_needed, "free": w.staging_free,
                     "total": w.staging_total, "budget": project.staging_budget, "message": w.message}
                    for w in workers if w.state == WorkerState.WAITING],
        "failed": failed,
        "running": project.status == ProjectStatus.BUILDING,
        "finished": project.status != ProjectStatus.BUILDING,  # no build running (never started, done, failed, cancelled)
    }


def _worker_doc(w: Worker) -> dict[str, Any]:
    return {"host": w.host, "pid": w.pid, "state": w.state, "message": w.message, "container_id": w.container_id,
            "bytes_done": w.bytes_done, "bytes_total": w.bytes_total, "rate": w.rate, "rss": w.rss,
            "cpu_percent": w.cpu_percent, "staging_total": w.staging_total, "staging_used": w.staging_used,
            "staging_free": w.staging_free, "space_needed": w.space_needed, "heartbeat_at": w.heartbeat_at,
            "started_at": w.started_at}
