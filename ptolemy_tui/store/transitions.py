"""Every change of a project's status, a scan's, a container's or a worker's state: the one place that writes them.

Each transition is one UPDATE whose WHERE holds its precondition (the states it may start from, and for a
container under a claim, that the claim is still the caller's), so two processes racing for the same move
cannot both make it: the loser's UPDATE matches no row. A project transition that finds its precondition gone
raises `TransitionRefused` (a UsageError naming the state and the next step); a container transition under a
claim returns False (the worker then knows its claim is gone and stops).

Claims. A claim is a lease: state building, claimed_by = the worker, lease_expires_at = now + lease. The
worker's report thread renews it every second; a worker killed with -9 stops renewing, and once the lease has
expired any worker may claim the container again (it removes the partial file first, see worker/container.py).
Every write under a claim matches `Holder.holds()`; a fencing token is one more field there.
Atomicity: on PostgreSQL the candidate row is locked with SELECT … FOR UPDATE SKIP LOCKED, so racing workers
each take a different row without waiting; on SQLite the claim runs in a BEGIN IMMEDIATE transaction, which
takes the database's write lock before reading, so claims are serialised. Serial builds build one container
at a time across all workers and hosts: the claim also checks that no other container holds a live lease, and
on PostgreSQL it first locks the project row so two claimers cannot both see "nobody is building".
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import peewee

from ptolemy_tui import faults
from ptolemy_tui.core.states import TODO, ContainerState, ProjectStatus, ScanState, WorkerState
from ptolemy_tui.errors import UsageError
from ptolemy_tui.store.bulk import insert_rows
from ptolemy_tui.store.db import is_postgres
from ptolemy_tui.store.models import Car, CarEntry, CarPlan, Container, Event, Project, Scan, Worker, database, now

P, C, S, W = ProjectStatus, ContainerState, ScanState, WorkerState

# Which statuses each step may start from. A failed step may be run again from the status before it.
STEP_FROM: dict[str, tuple[ProjectStatus, ...]] = {
    "scan": (P.DEFINED, P.SCANNED, P.CONTAINERIZED, P.BUILT, P.FAILED),
    "containerize": (P.SCANNED, P.CONTAINERIZED, P.FAILED),
    "build": (P.CONTAINERIZED, P.BUILDING, P.BUILT, P.FAILED),
}
# containerize --reset may also start over a crashed run (its transaction rolled back) or a finished build;
# never a running one (its workers' containers would vanish under them).
RESET_FROM = (P.SCANNED, P.CONTAINERIZING, P.CONTAINERIZED, P.BUILT, P.FAILED)
RETRY_FROM = (P.BUILDING, P.FAILED, P.BUILT, P.CONTAINERIZED)
# The next step for each status: (what to do, the command that does it).
NEXT_STEP: dict[ProjectStatus, tuple[str, str]] = {
    P.DEFINED: ("scan", "ptolemy scan {name}"),
    P.SCANNING: ("wait for the scan", "ptolemy status {name}"),
    P.SCANNED: ("containerize", "ptolemy containerize {name}"),
    P.CONTAINERIZING: ("wait for packing", "ptolemy status {name}"),
    P.CONTAINERIZED: ("build", "ptolemy build {name}"),
    P.BUILDING: ("watch the build", "ptolemy status {name}"),
    P.BUILT: ("export the manifest", "ptolemy manifest {name}"),
    P.FAILED: ("read the message and retry", "ptolemy status {name}"),
}


class TransitionRefused(UsageError):
    """The project is not in a status the transition may start from (checked by the UPDATE itself)."""


# --- projects ------------------------------------------------------------------------------------------------

def _move_project(project: Project, to: ProjectStatus, allowed: Iterable[ProjectStatus], *,
                  message: str | None = None, **extra: Any) -> bool:
    """UPDATE the project to `to` if its status is one of `allowed`; keeps the in-memory row in step."""
    at = now()
    changed = Project.update(status=to, message=message, updated_at=at, **extra).where(
        (Project.id == project.id) & Project.status.in_(tuple(allowed))).execute() == 1
    if changed:
        project.status, project.message, project.updated_at = to, message, at
        for key, value in extra.items():
            setattr(project, key, value)
    return changed


def _stored_status(project: Project) -> str:
    return Project.select(Project.status).where(Project.id == project.id).scalar() or project.status


def refusal(project: Project, step: str) -> TransitionRefused:
    """Why `step` cannot start from the project's status, and which step comes first."""
    status = _stored_status(project)
    hint = NEXT_STEP.get(status, ("", ""))[1].format(name=project.name)
    return TransitionRefused(f"cannot {step} project {project.name}: it is {status}; next: {hint}")


def _require(moved: bool, project: Project, step: str) -> None:
    if not moved:
        raise refusal(project, step)


# A scan or containerize is the project's job while it runs: `owner` ("host:pid") is written by the move into
# scanning or containerizing and cleared by every move out, with the heartbeat and the cancel request.
_NO_JOB = dict(job_owner=None, job_at=None, job_cancel=False)


def begin_scan(project: Project, owner: str) -> Scan:
    """→ scanning, with a new running Scan row; at most one scan per project runs (the UPDATE decides)."""
    with database.atomic():
        _require(_move_project(project, P.SCANNING, STEP_FROM["scan"], job_owner=owner, job_at=now(),
                               job_cancel=False), project, "scan")
        return Scan.create(project=project, state=S.RUNNING)


def save_scan_progress(scan: Scan) -> None:
    """Write a running scan's counters and heartbeat; never its state."""
    scan.save(only=[f for f in Scan._meta.sorted_fields if f.name not in ("id", "state", "project", "started_at")])


def finish_scan(project: Project, scan: Scan, status: ProjectStatus, message: str | None) -> None:
    """scan running → done (with its counters), project scanning → `status` (scanned, or what it was)."""
    with database.atomic():
        scan.state, scan.finished_at, scan.current_dir = S.DONE, now(), None
        _end_scan_row(scan)
        _move_project(project, status, (P.SCANNING,), message=message, **_NO_JOB)


def end_scan(project: Project, scan: Scan, state: ScanState, message: str) -> None:
    """scan running → failed or cancelled, project scanning → failed with the message."""
    with database.atomic():
        scan.state, scan.message, scan.finished_at = state, message, now()
        _end_scan_row(scan)
        _move_project(project, P.FAILED, (P.SCANNING,), message=message, **_NO_JOB)


def _end_scan_row(scan: Scan) -> None:
    fields = {f: getattr(scan, f.name) for f in Scan._meta.sorted_fields if f.name not in ("id", "project")}
    Scan.update(fields).where((Scan.id == scan.id) & (Scan.state == S.RUNNING)).execute()


def abandon_scans(project: Project, stale_before: float) -> bool:
    """Scans whose process died (no progress write since `stale_before`) → failed, and a project left scanning →
    failed. False, and nothing written, while a scan is still alive."""
    with database.atomic():
        running = Scan.select().where((Scan.project == project) & (Scan.state == S.RUNNING))
        if running.where(Scan.updated_at > stale_before).exists():
            return False
        Scan.update(state=S.FAILED, message="interrupted (no progress for a minute)", finished_at=now()).where(
            (Scan.project == project) & (Scan.state == S.RUNNING)).execute()
        _move_project(project, P.FAILED, (P.SCANNING,), message="the previous scan was interrupted: scan again",
                      **_NO_JOB)
    return True


def begin_containerize(project: Project, owner: str, *, reset: bool = False) -> None:
    _require(_move_project(project, P.CONTAINERIZING, RESET_FROM if reset else STEP_FROM["containerize"],
                           job_owner=owner, job_at=now(), job_cancel=False), project, "containerize")


def finish_containerize(project: Project) -> None:
    _move_project(project, P.CONTAINERIZED, (P.CONTAINERIZING,), **_NO_JOB)


def fail_containerize(project: Project, message: str) -> None:
    _move_project(project, P.FAILED, (P.CONTAINERIZING,), message=message, **_NO_JOB)


JOB_STATUSES = (P.SCANNING, P.CONTAINERIZING)


def renew_job(project_id: int, owner: str) -> bool | None:
    """The running job's heartbeat; returns whether a cancel was asked of it (None: the job is no longer
    `owner`'s, as after an abandon)."""
    if not Project.update(job_at=now()).where((Project.id == project_id) & (Project.job_owner == owner)).execute():
        return None
    return bool(Project.select(Project.job_cancel).where(Project.id == project_id).scalar())


def job_cancel_asked(project_id: int, owner: str) -> bool | None:
    """Whether a cancel was asked of `owner`'s job, read only (None: it is not `owner`'s job any more)."""
    row = Project.select(Project.job_owner, Project.job_cancel).where(Project.id == project_id).tuples().first()
    if row is None or row[0] != owner:
        return None
    return bool(row[1])


def request_job_cancel(project: Project) -> tuple[str, str | None] | None:
    """Ask the running scan or containerize (on another host) to stop: its process looks every second or so.
    Returns the project's status then (scanning or containerizing) and the job's owner; None when none runs."""
    with database.atomic():
        row = Project.select(Project.status, Project.job_owner).where(Project.id == project.id).tuples().first()
        if row is None or row[0] not in JOB_STATUSES:
            return None
        Project.update(job_cancel=True).where((Project.id == project.id) & Project.status.in_(JOB_STATUSES)).execute()
    return row[0], row[1]


def abandon_job(project: Project, owner: str, message: str) -> bool:
    """A job whose process is gone: the project → failed with `message` (and a running scan row → failed),
    only if `owner` still holds it."""
    at = now()
    with database.atomic():
        if not Project.update(status=P.FAILED, message=message, updated_at=at, **_NO_JOB).where(
                (Project.id == project.id) & Project.status.in_(JOB_STATUSES) & (Project.job_owner == owner)).execute():
            return False
        project.status, project.message, project.updated_at = P.FAILED, message, at
        Scan.update(state=S.FAILED, message=message, finished_at=now()).where(
            (Scan.project == project) & (Scan.state == S.RUNNING)).execute()
    return True


def redefine(project: Project, message: str) -> None:
    """The target changed: the project starts over from its scan (packing-relevant edits are refused while
    containers exist, so no build can be running)."""
    _move_project(project, P.DEFINED, tuple(P), message=message)


def start_build(project: Project, mode: str, *, supervisor_token: str, workers: int, stale_after: float) -> bool:
    """→ building, unpaused, remembering the mode as the project's load type, under a new supervisor: a
    compare-and-set that exactly one of two builds started at once wins (no live supervisor may hold the
    project). False: the status or a live supervisor refused it."""
    at = now()
    changes = dict(status=P.BUILDING, message=None, paused=False, load_type=mode, updated_at=at,
                   supervisor=supervisor_token, supervised_at=at, build_workers=workers)
    taken = Project.update(**changes).where(
        (Project.id == project.id) & Project.status.in_(STEP_FROM["build"])
        & (Project.supervisor.is_null() | (Project.supervised_at < at - stale_after))).execute() == 1
    if taken:
        for key, value in changes.items():
            setattr(project, key, value)
    return taken


def _set_paused(project: Project, paused: bool, verb: str) -> None:
    at = now()
    if not Project.update(paused=paused, updated_at=at).where(
            (Project.id == project.id) & (Project.status == P.BUILDING)).execute():
        raise TransitionRefused(f"cannot {verb} {project.name}: no build is running (it is {_stored_status(project)})")
    project.paused, project.updated_at = paused, at


def pause_build(project: Project) -> None:
    _set_paused(project, True, "pause")


def resume_build(project: Project) -> None:
    _set_paused(project, False, "resume")


# --- containers ------------------------------------------------------------------------------------------------

# The one "back to pending" update: a container given back unbuilt, with no claim, lease or progress left.
BACK_TO_PENDING = dict(state=C.PENDING, claimed_by=None, lease_expires_at=None, bytes_done=0, started_at=None,
                       finished_at=None)


def _requeue(where, **extra: Any) -> int:
    return Container.update(**BACK_TO_PENDING, **extra).where(where).execute()


@dataclass(frozen=True)
class Holder:
    """Who holds a claim. Every write under a claim goes through `holds`, so a worker whose lease was taken over
    (or cancelled) can no longer change the container."""

    container_id: int
    owner: str
    generation: int | None = None  # the claim's fencing token (it only grows); None: any generation

    def holds(self):
        where = (Container.id == self.container_id) & (Container.claimed_by == self.owner) & (
            Container.state == C.BUILDING)
        return where & (Container.generation == self.generation) if self.generation is not None else where


@dataclass
class Claim:
    container: Container
    reclaimed_from: str | None  # the previous owner when a lease had expired
    holder: Holder


def _claimable(project_id: int, at: float):
    return (Container.project == project_id) & (
        (Container.state == C.PENDING) | ((Container.state == C.BUILDING) & (Container.lease_expires_at < at)))


def _live_building(project_id: int, at: float):
    return Container.select(Container.id).where(
        (Container.project == project_id) & (Container.state == C.BUILDING) & (Container.lease_expires_at >= at))


def peek_next(project_id: int) -> Container | None:
    """The container the next claim would most likely take (serial builds check its size before claiming)."""
    return Container.select().where(_claimable(project_id, now())).order_by(Container.seq).first()


def claim(project_id: int, owner: str, lease: float, *, serial: bool = False) -> Claim | None:
    """pending (or building with an expired lease) → building, for the lowest-numbered such container; None when
    there is none, or when the build is no longer running or is paused — checked inside the claim's transaction,
    so a cancel or pause cannot slip in between the worker's look at the project and its claim (on PostgreSQL
    the project row is share-locked: a concurrent cancel waits for this claim, then requeues what it took)."""
    pg = is_postgres()
    with database.atomic():
        at = now()
        running = Project.select(Project.id).where(
            (Project.id == project_id) & (Project.status == P.BUILDING) & (Project.paused == False))  # noqa: E712
        if pg:
            # Serial builds serialise their claimers on the project row (held until commit).
            running = running.for_update("FOR NO KEY UPDATE" if serial else "FOR SHARE")
        if running.first() is None:
            return None
        query = Container.select().where(_claimable(project_id, at)).order_by(Container.seq).limit(1)
        if pg:
            # NO KEY UPDATE: the claim changes no key, so it need not wait for (or block) foreign-key checks of
            # other workers' inserts that reference the container; SKIP LOCKED: racers take the next row instead.
            query = query.for_update("FOR NO KEY UPDATE", skip_locked=True)
        candidate = query.first()
        if candidate is None:
            return None
        faults.reach("in-claim-transaction")  # tests: a worker frozen holding the row lock, inside the transaction
        if serial and _live_building(project_id, at).exists():
            return None
        previous = candidate.claimed_by if candidate.state == C.BUILDING else None
        taken = Container.update(
            state=C.BUILDING, claimed_by=owner, lease_expires_at=at + lease, attempts=Container.attempts + 1,
            bytes_done=0, started_at=at, finished_at=None, generation=Container.generation + 1,
        ).where((Container.id == candidate.id) & _claimable(project_id, at)).execute()
        if not taken:
            return None
        Event.create(project=project_id, level="warning" if previous else "debug",
                     text=(f"container {candidate.seq} reclaimed by {owner}: the lease of {previous} expired"
                           if previous else f"container {candidate.seq} claimed by {owner}"))
    box = Container.get_by_id(candidate.id)
    return Claim(box, previous, Holder(box.id, owner, box.generation))


def renew(holder: Holder, lease: float, bytes_done: int) -> bool:
    """Extend the lease and record progress. False: the claim is gone (cancelled, or taken over)."""
    return Container.update(lease_expires_at=now() + lease, bytes_done=bytes_done).where(
        holder.holds()).execute() == 1


def still_held(holder: Holder) -> bool:
    return Container.select().where(holder.holds()).exists()


def rename_if_held(holder: Holder, src: str, dst: str) -> bool:
    """Rename `src` (this claim's own partial file) to `dst` only while the store still shows this claim's
    token, holding the container row meanwhile (PostgreSQL: FOR UPDATE, so no reclaim can commit in between;
    SQLite: the write lock of BEGIN IMMEDIATE). False, and nothing renamed, when the claim is gone."""
    with database.atomic():
        query = Container.select(Container.id).where(holder.holds())
        if is_postgres():
            query = query.for_update()
        if query.first() is None:
            return False
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            # Re-run after a lost commit (dbretry) finds its rename done; otherwise our file was removed as an
            # orphan by a worker that reclaimed the container, which the query above would have shown.
            return os.path.exists(dst) and not os.path.exists(src)
    return True


def release(holder: Holder, *, undo_attempt: bool = False) -> bool:
    """building → pending: the container given back unbuilt (a stopping worker, or a serial worker that found
    too little space after claiming)."""
    extra = {"attempts": Container.attempts - 1} if undo_attempt else {}
    return _requeue(holder.holds(), **extra) == 1


def fail(holder: Holder, container: Container, error: str) -> bool:
    """building → failed; the message also goes to the event log so every failure's reason is kept."""
    with database.atomic():
        done = Container.update(state=C.FAILED, error=error, lease_expires_at=None, finished_at=now()).where(
            holder.holds()).execute() == 1
        if done:
            Event.create(project=container.project_id, level="error",
                         text=f"container {container.seq} failed (attempt {container.attempts}, {holder.owner}): "
                              f"{error}")
    return done


ENTRY_COLUMNS = ("path", "cid", "file", "offset", "length")  # the order of record_built's entry tuples


def record_built(holder: Holder, container: Container, car_fields: dict, entries: list[tuple],
                 plan: bytes | None = None) -> bool:
    """building → built with its CAR and entries (and an inline CAR's plan), all or nothing, if the claim still
    holds.

    entries: (path bytes, cid text, file id, offset, length) tuples, inserted by store.bulk (COPY or one
    prepared executemany: peewee's insert_many of dicts cost ~45 us per entry)."""
    with database.atomic():
        at = now()
        done = Container.update(state=C.BUILT, error=None, lease_expires_at=None, finished_at=at,
                                bytes_done=container.data_bytes).where(holder.holds()).execute() == 1
        if not done:
            return False
        Car.delete().where(Car.container == container.id).execute()  # a record left by an earlier build
        car = Car.create(project=container.project_id, container=container.id, built_at=at, **car_fields)
        if plan is not None:
            CarPlan.create(car=car.id, data=plan)
        meta = CarEntry._meta
        columns = [meta.fields[name].column_name for name in ("car",) + ENTRY_COLUMNS]
        insert_rows(database.obj, CarEntry, columns, [(car.id,) + row for row in entries])  # the proxied db
        Event.create(project=container.project_id,
                     text=f"container {container.seq} built: {car_fields['piece_cid']} "
                          f"({car_fields['car_size']:,} bytes, {car_fields['seconds']:.1f}s on {car_fields['host']})")
    return True


def requeue_orphans(project: Project) -> int:
    """building → pending for every container of a project no live worker holds (the caller checked that
    none is running): rather than waiting for their leases to expire."""
    with database.atomic():
        return _requeue((Container.project == project.id) & (Container.state == C.BUILDING))


def _counts(project_id: int) -> dict[str, int]:
    rows = Container.select(Container.state, peewee.fn.COUNT(Container.id)).where(
        Container.project == project_id).group_by(Container.state).tuples()
    return {state: int(n) for state, n in rows}


@dataclass
class Cancelled:
    requeued: list[Container]  # the in-flight containers sent back to pending
    built: int
    total: int


def cancel_build(project: Project) -> Cancelled:
    """building → containerized; in-flight containers back to pending."""
    with database.atomic():
        # The project row first: claims in progress finish before this (they share-lock it) and later ones
        # see the build stopped, so the containers requeued below include every claim ever made.
        if not _move_project(project, P.CONTAINERIZED, (P.BUILDING,), paused=False):
            raise TransitionRefused(f"cannot cancel {project.name}: no build is running "
                                    f"(it is {_stored_status(project)})")
        inflight = list(Container.select(Container.id, Container.seq, Container.generation).where(
            (Container.project == project.id) & (Container.state == C.BUILDING)))
        _requeue(Container.id.in_([c.id for c in inflight]) & (Container.state == C.BUILDING))
        by_state = _counts(project.id)
        built, total = by_state.get(C.BUILT, 0), sum(by_state.values())
        project.message = f"build cancelled with {built} of {total} built: `ptolemy build {project.name}` continues"
        Project.update(message=project.message).where(Project.id == project.id).execute()
    return Cancelled(inflight, built, total)


def requeue_failed(project: Project) -> int:
    """failed → pending for every failed container; a project not building goes back to containerized."""
    with database.atomic():
        status = Project.select(Project.status).where(Project.id == project.id).scalar()
        if status not in RETRY_FROM:
            raise TransitionRefused(f"cannot retry {project.name}: it is {status}")
        n = _requeue((Container.project == project.id) & (Container.state == C.FAILED))
        if n:
            _move_project(project, P.CONTAINERIZED, tuple(s for s in RETRY_FROM if s != P.BUILDING),
                          message=f"{n} failed container(s) requeued: `ptolemy build {project.name}`")
    return n


def failure_advice(project_id: int, name: str, failed: int) -> str:
    """The project's message after failures, naming the action that fixes them: a source that changed since the
    scan needs a rescan (a retry would fail the same way); anything else may pass on a retry."""
    changed = Container.select().where((Container.project == project_id) & (Container.state == C.FAILED)
                                       & Container.error.startswith("source changed")).count()
    if changed:
        return (f"{failed} container(s) failed, {changed} because a source changed since the scan: rescan with "
                f"`ptolemy scan {name}`, then `ptolemy containerize {name}` and `ptolemy build {name}`")
    return f"{failed} container(s) failed: see `ptolemy containers {name}`, then `ptolemy retry {name}`"


def finalize_build(project_id: int) -> str | None:
    """building → built, or failed naming the count, once no container is pending or building. Counted inside
    the transaction that writes, so a container requeued meanwhile keeps the build open."""
    with database.atomic():
        by_state = _counts(project_id)
        if any(by_state.get(s, 0) for s in TODO):
            return None
        failed = by_state.get(C.FAILED, 0)
        name = Project.select(Project.name).where(Project.id == project_id).scalar()
        status, message = (P.FAILED, failure_advice(project_id, name, failed)) if failed else (P.BUILT, None)
        changed = Project.update(status=status, message=message, updated_at=now()).where(
            (Project.id == project_id) & (Project.status == P.BUILDING)).execute()
        if changed:
            Event.create(project=project_id, level="error" if failed else "info",
                         text=f"build finished: {by_state.get(C.BUILT, 0)} built, {failed} failed")
    return status if changed else None


# --- workers ---------------------------------------------------------------------------------------------------

def preregister_workers(project_id: int, host: str, count: int, *, keep: list[int] | None) -> list[int]:
    """Rows for workers about to be spawned (they take them over). With `keep` (a new build), earlier builds'
    rows go, but for those ids; None (workers added to a running build) leaves every row."""
    if keep is not None:
        Worker.delete().where((Worker.project == project_id) & Worker.id.not_in(keep or [0])).execute()
    return [Worker.create(host=host, pid=os.getpid(), project=project_id, state=W.IDLE, message="starting").id
            for _ in range(count)]


def register_worker(host: str, pid: int, project_id: int, preset: int | None) -> Worker:
    """Take over the row `ptolemy build` registered for this process, or register anew (`ptolemy worker`)."""
    values = dict(host=host, pid=pid, project=project_id, state=W.IDLE, message=None, started_at=now(),
                  heartbeat_at=now())
    if preset is not None and Worker.update(**values).where(Worker.id == preset).execute():
        return Worker.get_by_id(preset)
    return Worker.create(**values)


def report_worker(worker_id: int, state: WorkerState, **fields: Any) -> None:
    """The worker's heartbeat: its state and whatever it reports with it."""
    Worker.update(state=state, heartbeat_at=now(), **fields).where(Worker.id == worker_id).execute()


def stop_worker(worker_id: int, message: str | None = None) -> None:
    """→ stopped (message: why, when it did not stop by itself)."""
    Worker.update(state=W.STOPPED, container=None, message=message, heartbeat_at=now()).where(
        Worker.id == worker_id).execute()
