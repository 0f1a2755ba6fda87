"""Freezing a real worker process at a named fault point (ptolemy_tui.faults), deterministically: no sleeps."""
from __future__ import annotations

import os
import signal
import time

from ptolemy_tui import faults
from tests.worker.buildkit import worker_logs


def arm(monkeypatch, point: str, directory) -> str:
    """Workers started from now on (they inherit the environment) stop at `point`; the first one only."""
    assert point in faults.POINTS
    os.makedirs(directory, exist_ok=True)
    monkeypatch.setenv(faults.POINT_ENV, point)
    monkeypatch.setenv(faults.DIR_ENV, str(directory))
    return str(directory)


def disarm(monkeypatch) -> None:
    monkeypatch.delenv(faults.POINT_ENV, raising=False)
    monkeypatch.delenv(faults.DIR_ENV, raising=False)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def wait_stopped(directory, point: str, timeout: float = 60) -> int:
    """The pid of the worker frozen at `point`, once it really is stopped."""
    marker = faults.marker_path(str(directory), point)
    deadline = time.monotonic() + timeout
    pid = None
    while time.monotonic() < deadline:
        if pid is None and os.path.exists(marker):
            text = open(marker).read().strip()
            pid = int(text) if text else None
        if pid is not None and _state(pid) in ("T", "t"):
            return pid
        time.sleep(0.02)
    raise AssertionError(f"no worker stopped at {point} within {timeout}s\n{worker_logs()}")


def resume(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)
