"""The states a project, a scan, a container and a worker can be in: the only spellings of them in the code.

They are StrEnums, so a value compares equal to (and is stored as) its text: what the store holds, the CLI's
`--json` and the TUI show is the same word. Only `store/transitions.py` writes them to the store; this module is
plain vocabulary (core: no database), so every layer, the screens included, can name a state.
"""
from __future__ import annotations

try:
    from enum import StrEnum
except ImportError:  # Python 3.10: the same behaviour, spelled out
    from enum import Enum

    class StrEnum(str, Enum):  # type: ignore[no-redef]
        def __str__(self) -> str:
            return str(self.value)


class ProjectStatus(StrEnum):
    """In the order a project moves through them."""

    DEFINED = "defined"
    SCANNING = "scanning"
    SCANNED = "scanned"
    CONTAINERIZING = "containerizing"
    CONTAINERIZED = "containerized"
    BUILDING = "building"
    BUILT = "built"
    FAILED = "failed"


class ScanState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ContainerState(StrEnum):
    PENDING = "pending"
    BUILDING = "building"  # claimed: a worker holds its lease
    BUILT = "built"
    FAILED = "failed"
    CANCELLED = "cancelled"  # known to older stores; nothing writes it now (a cancel requeues to pending)


class WorkerState(StrEnum):
    IDLE = "idle"
    BUILDING = "building"
    WAITING = "waiting"  # waiting for staging space
    STOPPED = "stopped"


# Containers whose CAR is not (being) built: a rescan that touches one sends it back for packing.
UNBUILT = (ContainerState.PENDING, ContainerState.FAILED, ContainerState.CANCELLED)
# Containers a build still has to do.
TODO = (ContainerState.PENDING, ContainerState.BUILDING)
