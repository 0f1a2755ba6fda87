"""Claiming containers so that no two workers, on any host, ever build the same one at the same time.

A claim is a lease: state "building", claimed_by = the worker, lease_expires_at = now + lease. The worker's
report thread renews it every second; a worker killed with -9 stops renewing, and once the lease has expired
any worker may claim the container again (it removes the partial file first, see container.py).

Atomicity: on PostgreSQL the candidate row is locked with SELECT … FOR UPDATE SKIP LOCKED, so racing workers
each take a different row without waiting; on SQLite the claim runs in a BEGIN IMMEDIATE transaction, which
takes the database's write lock before reading, so claims are serialised.

Fencing: every claim raises the container's generation, a token that only grows. A worker's claim is
(owner, generation), and every write it makes to the store — lease renewal, the CAR record, a failure, a
release — is conditional on that token, so a worker that stalled past its lease (SIGSTOP, a VM freeze, a long
network cut) and resumed after another worker took over can change nothing. Its files carry the token in their
names (`container-000042.g7.part`, see staging.part_path) and its final rename runs inside a transaction that
holds the container row while the store still shows the token (`rename_if_mine`).

Serial builds build one container at a time across all workers and hosts: the claim also checks that no other
container holds a live lease, and on PostgreSQL it first locks the project row so two claimers cannot both see
"nobody is building".
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ptolemy_tui import faults
from ptolemy_tui.store.bulk import insert_rows
from ptolemy_tui.store.db import is_postgres
from ptolemy_tui.store.models import Car, CarEntry, CarPlan, Container, Event, Project, database, now
from ptolemy_tui.store.queries import containers_by_state


@dataclass
class Claim:
    container: Container
    reclaimed_from: str | None  # the previous owner when a lease had expired


def _claimable(project_id: int, at: float):
    return (Container.project == project_id) & (
        (Container.state == "pending") | ((Container.state == "building") & (Container.lease_expires_at < at)))


def _live_building(project_id: int, at: float, exclude: int | None = None):
    query = Container.select(Container.id).where(
        (Container.project == project_id) & (Container.state == "building") & (Container.lease_expires_at >= at))
    if exclude is not None:
        query = query.where(Container.id != exclude)
    return query


def peek_next(project_id: int) -> Container | None:
    """The container the next claim would most likely take (serial builds check its size before claiming)."""
    return Container.select().where(_claimable(project_id, now())).order_by(Container.seq).first()


def write_transaction():
    """A transaction that will write. SQLite: BEGIN IMMEDIATE takes the write lock up front; a deferred
    transaction that reads first can fail to upgrade under WAL when another process wrote meanwhile."""
    return database.atomic() if is_postgres() else database.atomic("IMMEDIATE")


def claim_next(project_id: int, owner: str, lease: float, *, serial: bool = False) -> Claim | None:
    """Atomically take the lowest-numbered claimable container of the project, or None.

    None as well when the build is no longer running or is paused, checked inside the claim's transaction so
    a cancel or pause cannot slip in between the worker's look at the project and its claim (on PostgreSQL the
    project row is share-locked: a concurrent cancel waits for this claim, then requeues what it took).
    """
    pg = is_postgres()
    with write_transaction():
        at = now()
        running = Project.select(Project.id).where(
            (Project.id == project_id) & (Project.status == "building") & (Project.paused == False))  # noqa: E712
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
        previous = candidate.claimed_by if candidate.state == "building" else None
        Container.update(
            state="building", claimed_by=owner, lease_expires_at=at + lease, attempts=Container.attempts + 1,
            bytes_done=0, started_at=at, finished_at=None, generation=Container.generation + 1,
        ).where(Container.id == candidate.id).execute()
        Event.create(project=project_id, level="warning" if previous else "debug",
                     text=(f"container {candidate.seq} reclaimed by {owner}: the lease of {previous} expired"
                           if previous else f"container {candidate.seq} claimed by {owner}"))
    return Claim(Container.get_by_id(candidate.id), previous)


def _mine(container_id: int, owner: str, generation: int | None):
    where = (Container.id == container_id) & (Container.claimed_by == owner) & (Container.state == "building")
    return where & (Container.generation == generation) if generation is not None else where


def renew(container_id: int, owner: str, lease: float, bytes_done: int, generation: int | None = None) -> bool:
    """Extend the lease and record progress. False: the claim is gone (cancelled, or taken over)."""
    return Container.update(lease_expires_at=now() + lease, bytes_done=bytes_done).where(
        _mine(container_id, owner, generation)).execute() == 1


def still_mine(container_id: int, owner: str, generation: int | None = None) -> bool:
    return Container.select().where(_mine(container_id, owner, generation)).exists()


def rename_if_mine(container: Container, owner: str, src: str, dst: str) -> bool:
    """Rename `src` (this claim's own partial file) to `dst` only while the store still shows this claim's
    token, holding the container row meanwhile (PostgreSQL: FOR UPDATE, so no reclaim can commit in between;
    SQLite: the write lock of BEGIN IMMEDIATE). False, and nothing renamed, when the claim is gone."""
    with write_transaction():
        query = Container.select(Container.id).where(_mine(container.id, owner, container.generation))
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


def release(container_id: int, owner: str, *, undo_attempt: bool = False, generation: int | None = None) -> None:
    """Give the container back unbuilt (a serial worker that found too little space after claiming)."""
    changes = dict(state="pending", claimed_by=None, lease_expires_at=None, bytes_done=0, started_at=None)
    if undo_attempt:
        changes["attempts"] = Container.attempts - 1
    Container.update(**changes).where(_mine(container_id, owner, generation)).execute()


def mark_failed(container: Container, owner: str, error: str) -> bool:
    """Record a failed attempt; the message also goes to the event log so every failure's reason is kept."""
    with write_transaction():
        done = Container.update(state="failed", error=error, lease_expires_at=None, finished_at=now()).where(
            _mine(container.id, owner, container.generation)).execute() == 1
        if done:
            Event.create(project=container.project_id, level="error",
                         text=f"container {container.seq} failed (attempt {container.attempts}, {owner}): {error}")
    return done


ENTRY_COLUMNS = ("path", "cid", "file", "offset", "length")  # the order of mark_built's entry tuples


def mark_built(container: Container, owner: str, car_fields: dict, entries: list[tuple],
               plan: bytes | None = None) -> bool:
    """Record the CAR and its entries (and an inline CAR's plan) and mark the container built, all or nothing,
    if the claim still holds.

    entries: (path bytes, cid text, file id, offset, length) tuples, inserted by store.bulk (COPY or one
    prepared executemany: peewee's insert_many of dicts cost ~45 us per entry)."""
    with write_transaction():
        at = now()
        done = Container.update(state="built", error=None, lease_expires_at=None, finished_at=at,
                                bytes_done=container.data_bytes).where(
            _mine(container.id, owner, container.generation)).execute() == 1
        if not done:
            return False
        Car.delete().where(Car.container == container.id).execute()  # a record left by an earlier build
        car = Car.create(project=container.project_id, container=container.id, built_at=at, **car_fields)
        if plan is not None:
            CarPlan.create(car=car.id, data=plan)
        meta = CarEntry._meta
        columns = [meta.fields[name].column_name for name in ("car",) + ENTRY_COLUMNS]
        insert_rows(database.obj, meta.table_name, columns, [(car.id,) + row for row in entries])  # the proxied db
        Event.create(project=container.project_id,
                     text=f"container {container.seq} built: {car_fields['piece_cid']} "
                          f"({car_fields['car_size']:,} bytes, {car_fields['seconds']:.1f}s on {car_fields['host']})")
    return True


def failure_advice(project_id: int, name: str, failed: int) -> str:
    """The project's message after failures, naming the action that fixes them: a source that changed since the
    scan needs a rescan (a retry would fail the same way); anything else may pass on a retry."""
    changed = Container.select().where((Container.project == project_id) & (Container.state == "failed")
                                       & Container.error.startswith("source changed")).count()
    if changed:
        return (f"{failed} container(s) failed, {changed} because a source changed since the scan: rescan with "
                f"`ptolemy scan {name}`, then `ptolemy containerize {name}` and `ptolemy build {name}`")
    return f"{failed} container(s) failed: see `ptolemy containers {name}`, then `ptolemy retry {name}`"


def finalize_if_done(project_id: int) -> str | None:
    """When no container is pending or building, end the build: built, or failed naming the count."""
    by_state = containers_by_state(project_id)
    if by_state.get("pending", 0) or by_state.get("building", 0):
        return None
    failed = by_state.get("failed", 0)
    name = Project.get_by_id(project_id).name
    status, message = ("failed", failure_advice(project_id, name, failed)) if failed else ("built", None)
    with write_transaction():
        changed = Project.update(status=status, message=message, updated_at=now()).where(
            (Project.id == project_id) & (Project.status == "building")).execute()
        if changed:
            built = by_state.get("built", 0)
            Event.create(project=project_id, level="error" if failed else "info",
                         text=f"build finished: {built} built, {failed} failed")
    return status if changed else None
