"""The build supervisor: one detached process per running build that keeps the requested number of workers
alive, on the host where `ptolemy build` ran.

- One build per project, enforced by the store: `ptolemy build` takes the project with a compare-and-set on
  (status, supervisor, supervised_at) — two `build` commands racing cannot both win — and hands the token to
  this process, which renews `supervised_at` every poll. A supervisor whose heartbeat is older than
  SUPERVISOR_STALE seconds is dead and a new `build` may take over.
- Its workers are its children, so it learns why one ended: a worker killed (by a signal, the OOM killer) or
  crashed while work remains is replaced, with a backoff that doubles per consecutive death (1 s … 60 s) and
  resets once a worker has lived a minute; each death and restart is logged and recorded as an event.
- A worker stopped on purpose (SIGTERM/SIGINT: it hands its container back and exits with STOPPED_EXIT) is not
  replaced: the build's worker count drops by one, so an operator can stop workers one by one.
- `ptolemy build NAME --workers N` on a running build writes N to Project.build_workers; the supervisor starts
  workers or stops the newest ones (SIGTERM) to match. Serial builds keep one worker.
- The build ends as before, through the store (the workers finalize it, or cancel); the supervisor then waits
  for its children, gives up its claim on the project and exits.
"""
from __future__ import annotations

import logging
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass

from ptolemy_tui.core.states import TODO, ProjectStatus
from ptolemy_tui.store import transitions
from ptolemy_tui.store.models import Event, Project, Worker, now
from ptolemy_tui.store.queries import containers_by_state
from ptolemy_tui.worker import dbretry, launch, settings
from ptolemy_tui.worker.main import STOPPED_EXIT

log = logging.getLogger(__name__)

SUPERVISOR_STALE = 30.0  # seconds without a supervisor heartbeat before a new `build` may take the project over
BACKOFF_MAX = 60.0
HEALTHY_AFTER = 60.0  # a worker that lived this long resets the backoff


def new_token() -> str:
    return f"{settings.hostname()}:{uuid.uuid4().hex[:12]}"[:128]


@dataclass
class _Child:
    proc: subprocess.Popen
    worker_id: int
    started: float
    stopping: bool = False  # we sent it SIGTERM (scaling down)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


class Supervisor:
    def __init__(self, project_name: str, token: str, preset_ids: list[int]):
        self.project_name = project_name
        self.token = token
        self.preset_ids = list(preset_ids)
        self.timing = settings.timing()
        self.children: dict[int, _Child] = {}
        self.failures = 0  # consecutive abnormal deaths
        self.next_start = 0.0
        self.project_id: int | None = None

    # --- the store --------------------------------------------------------------------------------------------
    def _heartbeat(self) -> bool:
        """Renew our claim on the project; False when it is no longer ours (taken over, or given up)."""
        return Project.update(supervised_at=now()).where(
            (Project.id == self.project_id) & (Project.supervisor == self.token)).execute() == 1

    def _event(self, text: str, level: str = "warning") -> None:
        log.log(logging.WARNING if level == "warning" else logging.INFO, "%s", text)
        Event.create(project=self.project_id, level=level, text=text)

    def _release(self) -> None:
        Project.update(supervisor=None, supervised_at=None).where(
            (Project.id == self.project_id) & (Project.supervisor == self.token)).execute()

    # --- children ---------------------------------------------------------------------------------------------
    def _spawn(self, worker_id: int | None = None) -> None:
        host = settings.hostname()
        if worker_id is None:
            worker_id = transitions.preregister_workers(self.project_id, host, 1, keep=None)[0]
        proc = launch.spawn_worker(self.project_name, worker_id)
        Worker.update(pid=proc.pid).where((Worker.id == worker_id) & (Worker.message == "starting")).execute()
        self.children[proc.pid] = _Child(proc, worker_id, time.monotonic())
        log.info("worker %s started (pid %s)", worker_id, proc.pid)

    def _reap(self, running: bool, work_left: bool) -> None:
        for pid, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None:
                continue
            del self.children[pid]
            lived = time.monotonic() - child.started
            if child.stopping:
                log.info("worker pid %s stopped (scaled down)", pid)
                continue
            if code == STOPPED_EXIT:
                # Stopped on purpose by someone else (an operator's kill -TERM): keep one worker fewer.
                left = Project.update(build_workers=Project.build_workers - 1).where(
                    (Project.id == self.project_id) & (Project.build_workers > 0)).execute()
                self._event(f"worker pid {pid} was stopped (SIGTERM); the build keeps one worker fewer"
                            if left else f"worker pid {pid} was stopped (SIGTERM)", "info")
                continue
            if code in (0, 1) or not running or not work_left:
                continue  # it ended with the build (1: it saw a container fail, which the build reports)
            if lived >= HEALTHY_AFTER:
                self.failures = 0
            delay = min(BACKOFF_MAX, 2.0 ** self.failures)
            self.failures += 1
            self.next_start = max(self.next_start, time.monotonic() + delay)
            transitions.stop_worker(child.worker_id, describe_exit(code))
            self._event(f"worker pid {pid} {describe_exit(code)} after {lived:.0f}s; starting a replacement in "
                        f"{delay:.0f}s (see its log in {launch.log_dir()})")

    def _scale_down(self, surplus: int) -> None:
        newest = sorted((c for c in self.children.values() if not c.stopping), key=lambda c: c.started,
                        reverse=True)[:surplus]
        for child in newest:
            child.stopping = True
            try:
                child.proc.send_signal(signal.SIGTERM)  # it hands its container back, then exits
            except ProcessLookupError:
                pass
            log.info("stopping worker pid %s (the build's worker count went down)", child.proc.pid)

    # --- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> int:
        project = Project.get_or_none(Project.name == self.project_name)
        if project is None or project.supervisor != self.token:
            log.info("the build of %s is not ours to supervise", self.project_name)
            return 0
        self.project_id = project.id
        for worker_id in self.preset_ids:
            self._spawn(worker_id)
        log.info("supervising the build of %s with %s worker(s)", self.project_name, len(self.children))
        try:
            while True:
                ours = dbretry.retrying(self._heartbeat, "renewing the supervision")
                project = dbretry.retrying(lambda: Project.get_by_id(self.project_id), "reading the project")
                running = ours and project.status == ProjectStatus.BUILDING
                by_state = dbretry.retrying(lambda: containers_by_state(self.project_id), "counting containers")
                work_left = any(by_state.get(state, 0) for state in TODO)
                dbretry.retrying(lambda: self._reap(running, work_left), "recording a worker's end")
                # Read again: a worker stopped with SIGTERM lowered build_workers in _reap, and the count read
                # before it would start a replacement for the very worker the operator stopped.
                project = dbretry.retrying(lambda: Project.get_by_id(self.project_id), "reading the project")
                if not running:
                    if not self.children:
                        break
                elif not project.paused:
                    desired = 1 if project.load_type == "serial" else max(0, project.build_workers or 0)
                    active = [c for c in self.children.values() if not c.stopping]
                    if len(active) > desired:
                        self._scale_down(len(active) - desired)
                    elif len(active) < desired and work_left and time.monotonic() >= self.next_start:
                        for _ in range(desired - len(active)):
                            dbretry.retrying(self._spawn, "starting a worker")
                    elif not self.children and (desired == 0 or not work_left):
                        break  # nobody left to supervise: a later `build` starts afresh
                time.sleep(self.timing.poll)
        finally:
            for child in self.children.values():  # the build ended or was taken over: they stop by themselves
                try:
                    child.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    log.warning("worker pid %s still running as the supervisor exits", child.proc.pid)
            try:
                dbretry.retrying(self._release, "giving up the supervision", patience=30)
            except dbretry.STORE_ERRORS:
                pass
            log.info("supervisor of %s exits", self.project_name)
        return 0


def run_supervisor(project_name: str, token: str, preset_ids: list[int]) -> int:
    return Supervisor(project_name, token, preset_ids).run()
