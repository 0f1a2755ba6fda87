"""Timing and space knobs of the build, read from the environment so tests can shrink them to seconds.

Defaults: a lease of 40 s renewed every second with the progress report, so a worker killed with -9 (or a host
that lost power) leaves a container that any polling worker takes over within 40 s + one poll (< 60 s).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from ptolemy_tui.core.sizes import SizeError, parse_size

DEFAULT_LEASE_SECONDS = 40.0
DEFAULT_REPORT_SECONDS = 1.0  # progress report + lease renewal ("heartbeat")
DEFAULT_POLL_SECONDS = 2.0  # idle/waiting workers look for work (and expired leases) this often
RESERVE_FRACTION = 0.02  # serial builds keep this much of the staging filesystem free ...
RESERVE_CAP = 1 << 30  # ... but never more than 1 GiB


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class Timing:
    lease: float
    report: float
    poll: float


def timing() -> Timing:
    """PTOLEMY_LEASE_SECONDS, PTOLEMY_REPORT_SECONDS (heartbeat), PTOLEMY_POLL_SECONDS."""
    lease = _float_env("PTOLEMY_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)
    report = min(_float_env("PTOLEMY_REPORT_SECONDS", DEFAULT_REPORT_SECONDS), lease / 3)
    poll = _float_env("PTOLEMY_POLL_SECONDS", DEFAULT_POLL_SECONDS)
    return Timing(lease, report, poll)


def staging_reserve(disk_total: int) -> int:
    """Bytes a serial build leaves free on the staging filesystem: PTOLEMY_STAGING_RESERVE (bytes) or 2 %, ≤ 1 GiB."""
    raw = os.environ.get("PTOLEMY_STAGING_RESERVE")
    if raw:
        try:
            return max(0, int(raw))
        except ValueError:
            pass
    return min(RESERVE_CAP, int(disk_total * RESERVE_FRACTION))


def read_rate_limit() -> float | None:
    """PTOLEMY_READ_RATE: a cap on each worker's source reads in bytes per second (sizes like 200MiB too), so a
    build can spare a shared NFS server; None (the default) reads as fast as the disks go."""
    raw = os.environ.get("PTOLEMY_READ_RATE")
    if not raw:
        return None
    try:
        value = int(raw) if raw.isdigit() else parse_size(raw)
    except SizeError:
        return None
    return float(value) if value > 0 else None


def hostname() -> str:
    return socket.gethostname()[:100]
