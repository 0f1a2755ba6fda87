"""The worker process: register, then claim and build containers until the build is over.

Loop, each turn re-reading the project (the store is how the operator talks to workers, on every host):
- the project is no longer "building" (cancelled, finished) → stop;
- paused → stay registered and idle (state "idle", message "paused") until resumed or cancelled; the container
  being built when the pause came is finished first;
- serial → before claiming, the next container's predicted CAR size plus a reserve must fit the staging disk and
  the project's staging budget; otherwise state "waiting" (waiting for staging space) with the numbers, and poll;
- claim (a lease, see store/transitions.py) and build (container.py); nothing claimable → if nothing is pending or building
  either, end the build and stop; else (others are building) idle and poll, ready to take over an expired lease.
SIGTERM/SIGINT: the container in hand is given back (pending) and its partial file removed, then the worker stops.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass

from ptolemy_tui.core.sources import source_for
from ptolemy_tui.core.states import TODO, ProjectStatus, WorkerState
from ptolemy_tui.store import transitions
from ptolemy_tui.store.models import Project
from ptolemy_tui.store.queries import containers_by_state
from ptolemy_tui.worker import container as container_build, dbretry, launch, settings
from ptolemy_tui.worker.reporter import Reporter
from ptolemy_tui.worker.staging import check_serial

log = logging.getLogger(__name__)

STOPPED_EXIT = 143  # stopped by SIGTERM/SIGINT (128 + 15); worker.supervisor does not replace such a worker


@dataclass
class WorkerOptions:
    project: str | None = None  # None: any project that is building
    staging: str | None = None  # overrides the project's staging_dir on this host
    source_root: str | None = None  # overrides the project's target_dir on this host
    once: bool = False  # stop after one container (tests, debugging)


def _find_project(name: str | None) -> Project | None:
    if name is not None:
        return Project.get_or_none(Project.name == name)
    return Project.select().where(Project.status == ProjectStatus.BUILDING).order_by(Project.id).first()


def run_worker(options: WorkerOptions) -> int:
    """Run until the build is over. Returns 0, or 1 if this worker saw a container fail."""
    project = dbretry.retrying(lambda: _find_project(options.project), "finding the project")
    if project is None:
        log.info("no project to build%s", f" named {options.project}" if options.project else "")
        preset = os.environ.pop(launch.WORKER_ID_ENV, None)
        if preset and preset.isdigit():  # the row `ptolemy build` registered for us must not linger as live
            transitions.stop_worker(int(preset))
        return 0
    return _Worker(options, project).run()


class _Worker:
    """One worker's life: register, take turns (see the module's docstring), unregister."""

    def __init__(self, options: WorkerOptions, project: Project):
        self.options, self.project = options, project
        self.timing = settings.timing()
        self.host = settings.hostname()
        self.staging_dir = options.staging or project.staging_dir
        self.source = source_for(project, options.source_root)
        self.worker = dbretry.retrying(lambda: _register(self.host, os.getpid(), project.id), "registering")
        self.owner = f"{self.host}:{os.getpid()}:{self.worker.id}"
        self.reporter = Reporter(self.worker.id, self.owner, self.staging_dir, self.timing.lease, self.timing.report)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.failed_any = False

    def _on_signal(self, _signum, _frame) -> None:
        self.stopping.set()
        self.wake.set()
        self.reporter.request_stop()  # the builder stops at its next read; the claim is released after it

    def run(self) -> int:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        self.reporter.report_now()
        self.reporter.start()
        log.info("worker %s started on project %s (staging %s, source %s)", self.owner, self.project.name,
                 self.staging_dir, self.source.location)
        try:
            self._turns()
        finally:
            self._unregister()
        if self.stopping.is_set():
            return STOPPED_EXIT  # on purpose: a supervisor does not replace it
        return 1 if self.failed_any else 0

    def _turns(self) -> None:
        while not self.stopping.is_set():
            project = dbretry.retrying(lambda: Project.get_or_none(Project.id == self.project.id),
                                       "reading the project")
            if project is None or project.status != ProjectStatus.BUILDING:
                return
            self.project = project
            if self._must_wait():
                self.wake.wait(self.timing.poll)
                continue
            serial = project.load_type == "serial"
            claim = dbretry.retrying(lambda: transitions.claim(project.id, self.owner, self.timing.lease,
                                                               serial=serial), "claiming a container")
            if claim is None:
                if self._build_is_over():
                    return
                self.reporter.set(WorkerState.IDLE, "waiting for other workers to finish")
                self.wake.wait(self.timing.poll)
                continue
            if serial and not self._fits(claim):
                continue
            self._build(claim)
            if self.options.once:
                return

    def _must_wait(self) -> bool:
        """Paused, or (serial) the next container does not fit the staging space: report it and say so."""
        project = self.project
        if project.paused:
            self.reporter.set(WorkerState.IDLE, "paused")
            return True
        if project.load_type != "serial":
            return False
        nxt = dbretry.retrying(lambda: transitions.peek_next(project.id), "looking for work")
        if nxt is None:
            return False
        check = check_serial(self.staging_dir, project.name, nxt.predicted_size, project.staging_budget)
        if not check.ok:
            self.reporter.set(WorkerState.WAITING, check.reason, space_needed=check.needed)
            return True
        return False

    def _build_is_over(self) -> bool:
        """Nothing claimable: the build is over when this worker finalizes it or nothing is left to do."""
        return bool(dbretry.retrying(lambda: transitions.finalize_build(self.project.id), "finishing the build")) \
            or not _anything_left(self.project.id)

    def _fits(self, claim: transitions.Claim) -> bool:
        """Serial: the container claimed may not be the one peeked at; if it does not fit, hand it back."""
        project = self.project
        check = check_serial(self.staging_dir, project.name, claim.container.predicted_size, project.staging_budget)
        if not check.ok:
            dbretry.retrying(lambda: transitions.release(claim.holder, undo_attempt=True), "releasing")
        return check.ok

    def _build(self, claim: transitions.Claim) -> None:
        box = claim.container
        self.reporter.set(WorkerState.BUILDING, f"container {box.seq}", holder=claim.holder,
                          bytes_total=box.data_bytes)
        outcome = container_build.build(self.project, box, staging_dir=self.staging_dir, source=self.source,
                                        holder=claim.holder, host=self.host, reporter=self.reporter,
                                        profile=self.project.profile)
        self.reporter.set(WorkerState.IDLE)
        if outcome.status == "aborted":
            log.warning("container %s: %s; this worker keeps nothing of it", box.seq, outcome.message)
            if self.stopping.is_set():
                # Our own stop (SIGTERM): hand the container back now instead of leaving it to lease expiry.
                dbretry.retrying(lambda: transitions.release(claim.holder), "releasing")
        if outcome.status == "failed":
            self.failed_any = True

    def _unregister(self) -> None:
        self.reporter.set(WorkerState.STOPPED)
        self.reporter.stop()
        try:
            dbretry.retrying(lambda: transitions.stop_worker(self.worker.id), "unregistering", patience=30)
        except dbretry.STORE_ERRORS:
            log.warning("could not mark worker %s stopped; it leaves the live view when its heartbeat ages",
                        self.owner)
        log.info("worker %s stopped", self.owner)


def _register(host: str, pid: int, project_id: int):
    preset = os.environ.pop(launch.WORKER_ID_ENV, None)
    return transitions.register_worker(host, pid, project_id, int(preset) if preset and preset.isdigit() else None)


def _anything_left(project_id: int) -> bool:
    by_state = dbretry.retrying(lambda: containers_by_state(project_id), "counting containers")
    return any(by_state.get(state, 0) for state in TODO)
