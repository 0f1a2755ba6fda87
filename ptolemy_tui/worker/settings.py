"""Timing and space knobs of the build (from ptolemy_tui.settings, so tests can shrink them to seconds).

Defaults: a lease of 40 s renewed every second with the progress report, so a worker killed with -9 (or a host
that lost power) leaves a container that any polling worker takes over within 40 s + one poll (< 60 s).
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

from ptolemy_tui.settings import current

RESERVE_FRACTION = 0.02  # serial builds keep this much of the staging filesystem free ...
RESERVE_CAP = 1 << 30  # ... but never more than 1 GiB


@dataclass(frozen=True)
class Timing:
    lease: float
    report: float
    poll: float


def timing() -> Timing:
    """PTOLEMY_LEASE_SECONDS, PTOLEMY_REPORT_SECONDS (heartbeat, at most a third of the lease), PTOLEMY_POLL_SECONDS."""
    knobs = current()
    return Timing(knobs.lease_seconds, min(knobs.report_seconds, knobs.lease_seconds / 3), knobs.poll_seconds)


def staging_reserve(disk_total: int) -> int:
    """Bytes a serial build leaves free on the staging filesystem: PTOLEMY_STAGING_RESERVE (bytes) or 2 %, ≤ 1 GiB."""
    reserve = current().staging_reserve
    return reserve if reserve is not None else min(RESERVE_CAP, int(disk_total * RESERVE_FRACTION))


def read_rate_limit() -> float | None:
    """PTOLEMY_READ_RATE: a cap on each worker's source reads in bytes per second (sizes like 200MiB too), so a
    build can spare a shared NFS server; None (the default) reads as fast as the disks go."""
    return current().read_rate


def hostname() -> str:
    return socket.gethostname()[:100]
