"""The staging disk: where a project's CARs go, how full it is, and whether the next CAR fits.

Serial builds never overfill it: before each container the free space must cover the container's predicted
CAR size plus a reserve, and the project's own files in staging plus that CAR must stay within the project's
staging budget (when it has one). Blitz builds check the whole build once, before starting.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import psutil

from ptolemy_tui.worker.settings import staging_reserve


def project_dir(staging_dir: str, project_name: str) -> str:
    return os.path.join(staging_dir, project_name)


def part_path(staging_dir: str, project_name: str, seq: int, generation: int) -> str:
    """Where claim `generation` of container `seq` writes; no other claim ever uses this name, and the file only
    gets its final `<pieceCID>.car` name once complete (and only while the claim holds)."""
    return os.path.join(project_dir(staging_dir, project_name), f"container-{seq:06d}.g{generation}.part")


_PART = re.compile(r"^container-(\d{6,})(?:\.g(\d+))?\.(?:car\.)?part$")


def expired_parts(staging_dir: str, project_name: str, seq: int, below: int) -> list[str]:
    """Partial files of container `seq` left by claims older than generation `below` (dead or superseded
    workers; `.car.part` is the name before generations): what the claim `below` may clean up."""
    out = []
    try:
        names = os.listdir(project_dir(staging_dir, project_name))
    except FileNotFoundError:
        return out
    for name in names:
        match = _PART.match(name)
        if match and int(match.group(1)) == seq and int(match.group(2) or 0) < below:
            out.append(os.path.join(project_dir(staging_dir, project_name), name))
    return out


def car_path(staging_dir: str, project_name: str, piece_cid: str) -> str:
    return os.path.join(project_dir(staging_dir, project_name), f"{piece_cid}.car")


@dataclass(frozen=True)
class Disk:
    total: int
    used: int
    free: int


def disk_usage(path: str) -> Disk:
    """psutil.disk_usage of the nearest existing ancestor (the staging dir may not exist yet)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    usage = psutil.disk_usage(probe)
    return Disk(usage.total, usage.used, usage.free)


def project_bytes(staging_dir: str, project_name: str) -> int:
    """Bytes the project's CARs (finished and partial) occupy in staging now: what counts against its budget."""
    total = 0
    try:
        with os.scandir(project_dir(staging_dir, project_name)) as it:
            for entry in it:
                if entry.name.endswith((".car", ".part")):
                    try:
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        pass  # removed while we looked
    except FileNotFoundError:
        pass
    return total


@dataclass(frozen=True)
class SpaceCheck:
    ok: bool
    needed: int  # predicted CAR size + reserve
    predicted: int
    reserve: int
    disk: Disk
    budget: int | None
    project_used: int
    reason: str = ""


def check_serial(staging_dir: str, project_name: str, predicted: int, budget: int | None) -> SpaceCheck:
    """May a serial worker start a container of `predicted` bytes now?"""
    from ptolemy_tui.core.sizes import format_size  # noqa: PLC0415 - keep module import light

    disk = disk_usage(staging_dir)
    reserve = staging_reserve(disk.total)
    needed = predicted + reserve
    used = project_bytes(staging_dir, project_name) if budget is not None else 0
    reason = ""
    # Short enough for one line of an 80-column banner after "WAITING FOR STAGING: N workers; ".
    if disk.free < needed:
        reason = (f"waiting for staging space: disk {human(disk.free)} free, next CAR needs {human(needed)} "
                  f"(with reserve)")
    elif budget is not None and used + predicted > budget:
        reason = (f"waiting for staging space: budget {human(used)} of {format_size(budget)} used, next CAR "
                  f"needs {human(predicted)}")
    return SpaceCheck(not reason, needed, predicted, reserve, disk, budget, used, reason)


def human(n: int) -> str:
    """Sizes in messages: binary units with one decimal, what an operator compares with `df -h`."""
    from humanize import naturalsize  # noqa: PLC0415

    return naturalsize(n, binary=True, format="%.1f")
