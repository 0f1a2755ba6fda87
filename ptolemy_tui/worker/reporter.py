"""The worker's report thread: about once a second it writes what the worker is doing to its Worker row
(state, container, bytes, MB/s, staging disk, RSS, CPU %) and renews the lease of the container it builds.

It runs in its own thread with its own store connection (peewee keeps one per thread), so a long read of a
slow NFS file or a CommP flush never delays the heartbeat that keeps the claim alive. When a renewal finds
the claim gone (the build was cancelled, or the lease was taken over after a stall) it sets `claim_lost`, which
the builder checks between reads and aborts on.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time

import psutil

from ptolemy_tui.core.states import WorkerState
from ptolemy_tui.store import transitions
from ptolemy_tui.worker import dbretry
from ptolemy_tui.worker.staging import disk_usage

log = logging.getLogger(__name__)

RATE_WINDOW = 5.0  # seconds of history behind the MB/s figure


class Reporter:
    def __init__(self, worker_id: int, owner: str, staging_dir: str, lease: float, interval: float):
        self.worker_id = worker_id
        self.owner = owner
        self.staging_dir = staging_dir
        self.lease = lease
        self.interval = interval
        self.lock = threading.Lock()
        self.state = WorkerState.IDLE
        self.message: str | None = None
        self.holder: transitions.Holder | None = None  # the claim being built under, if any
        self.bytes_done = 0
        self.bytes_total = 0
        self.space_needed = 0
        self.claim_lost = threading.Event()
        self.stop_requested = threading.Event()  # SIGTERM/SIGINT: whatever is in hand is given up
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._stop = threading.Event()
        self._kick = threading.Event()  # a state change is reported at once, not at the next tick
        self._thread = threading.Thread(target=self._run, name="ptolemy-report", daemon=True)
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)  # the first call only starts the measurement

    # --- called by the worker's main thread ---------------------------------------------------------------
    def set(self, state: WorkerState, message: str | None = None, *, holder: transitions.Holder | None = None,
            bytes_total: int = 0, space_needed: int = 0) -> None:
        with self.lock:
            if not self.stop_requested.is_set():  # a stop that came before this call (after a claim) stays
                self.claim_lost.clear()
            self.state, self.message, self.holder = state, message, holder
            self.bytes_total, self.bytes_done, self.space_needed = bytes_total, 0, space_needed
            self._samples.clear()
        self._kick.set()

    def request_stop(self) -> None:
        """Called from a signal handler: the builder stops at its next read, even if the signal came between a
        claim and the `set` that announces it."""
        self.stop_requested.set()
        self.claim_lost.set()

    def progress(self, bytes_done: int) -> None:
        self.bytes_done = bytes_done  # a plain int store: atomic under the GIL, read by the report thread

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        self._thread.join(timeout=self.interval * 3 + 5)

    def report_now(self) -> None:
        self._report()

    # --- the thread ---------------------------------------------------------------------------------------
    def _rate(self, t: float, done: int) -> float:
        samples = self._samples
        samples.append((t, done))
        while len(samples) > 2 and samples[0][0] < t - RATE_WINDOW:
            samples.popleft()
        t0, d0 = samples[0]
        return (done - d0) / (t - t0) if t > t0 else 0.0

    def _report(self) -> None:
        with self.lock:
            state, message, holder = self.state, self.message, self.holder
            bytes_total, space_needed = self.bytes_total, self.space_needed
            done = self.bytes_done
            rate = self._rate(time.monotonic(), done) if holder else 0.0
        if holder is not None and not transitions.renew(holder, self.lease, done):
            with self.lock:
                if self.holder == holder:  # not a container that just finished normally
                    self.claim_lost.set()
        try:
            disk = disk_usage(self.staging_dir)
            staging = dict(staging_total=disk.total, staging_used=disk.used, staging_free=disk.free)
        except OSError:
            staging = {}
        try:
            rss, cpu = self._process.memory_info().rss, self._process.cpu_percent(None)
        except psutil.Error:
            rss, cpu = 0, 0.0
        transitions.report_worker(self.worker_id, state, message=message,
                                  container=holder.container_id if holder else None, bytes_done=done,
                                  bytes_total=bytes_total, rate=rate, rss=rss, cpu_percent=cpu,
                                  space_needed=space_needed, **staging)

    def _run(self) -> None:
        while True:
            self._kick.wait(self.interval)
            self._kick.clear()
            if self._stop.is_set():
                break
            try:
                self._report()
            except dbretry.STORE_ERRORS as exc:
                log.warning("report failed (%s); next one in %.1fs", exc, self.interval)
                dbretry.drop_connection()
            except Exception:  # noqa: BLE001 - the heartbeat must outlive any single bad report
                log.exception("report failed")
        dbretry.drop_connection()
