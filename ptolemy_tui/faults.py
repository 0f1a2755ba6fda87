"""Fault points: named places in the worker where a test can freeze a real worker process, deterministically.

Off unless the environment says otherwise, and then only the tests turn it on: PTOLEMY_FAULT_POINT names one
point and PTOLEMY_FAULT_DIR a directory. The first process to reach that point (an O_EXCL marker file decides,
so exactly one worker of several stops) writes `<dir>/<point>.reached` holding its pid and stops itself with
SIGSTOP: every thread freezes at once, as in a VM freeze or a long GC pause, lease renewal included. The test
waits for the marker, makes the world move on (another worker takes the container over), then sends SIGCONT.

Points (see where `reach()` is called): after-claim, in-claim-transaction, mid-write, before-rename,
after-rename, before-record; in `ptolemy serve`: serve-before-body (response headers sent, no body yet); in
containerize: mid-pack (as the packer places the first items, inside its transaction).
"""
from __future__ import annotations

import os
import signal

POINT_ENV = "PTOLEMY_FAULT_POINT"
DIR_ENV = "PTOLEMY_FAULT_DIR"

POINTS = ("after-claim", "in-claim-transaction", "mid-write", "before-rename", "after-rename", "before-record",
          "serve-before-body", "mid-pack")


def marker_path(directory: str, point: str) -> str:
    return os.path.join(directory, f"{point}.reached")


def reach(point: str) -> None:
    """Called by the worker at `point`; a no-op unless a test armed exactly this point."""
    if os.environ.get(POINT_ENV) != point:
        return
    directory = os.environ.get(DIR_ENV)
    if not directory:
        return
    try:
        fd = os.open(marker_path(directory, point), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return  # another process already stopped here: only one worker is frozen per test
    try:
        os.write(fd, str(os.getpid()).encode())
    finally:
        os.close(fd)
    os.kill(os.getpid(), signal.SIGSTOP)
