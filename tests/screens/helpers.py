"""Real data for the screen tests: the demo tree on disk, a project made by the projects service, scanned and
packed by the pipeline services, and build rows (CARs, workers) written as a running build writes them."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ptolemy_tui.services import demo, projects
from ptolemy_tui.store.models import Car, Container, Project, Worker
from tests.states import force_status


async def wait_for(pilot, predicate, timeout: float = 10.0, step: float = 0.05) -> None:
    """Let the app run until predicate() holds (thread workers deliver between frames)."""
    deadline = time.monotonic() + timeout
    while True:
        await pilot.pause()
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - widgets may not exist yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {getattr(predicate, '__name__', predicate)}")
        await asyncio.sleep(step)


def make_project(base: Path, name: str = "demo", files: int = 60, **overrides) -> Project:
    target, staging = base / "data", base / "staging"
    target.mkdir(parents=True, exist_ok=True)
    demo.make_tree(target, files=files)
    spec = projects.ProjectSpec(name, str(target), str(staging), car_size=demo.DEMO_CAR_SIZE,
                                shard_size=demo.DEMO_SHARD_SIZE, workers=2, **overrides)
    project, _ = projects.create(spec)
    return project


def scan(project: Project) -> None:
    from ptolemy_tui.services.scan import run_scan

    run_scan(project)


def containerize(project: Project) -> None:
    from ptolemy_tui.services.containerize import containerize as pack

    pack(project)


def fake_build_rows(project: Project, *, waiting: bool = False) -> None:
    """Cars for the first containers and two live workers, as a build in progress writes them."""
    boxes = list(Container.select().where(Container.project == project).order_by(Container.seq))
    for c in boxes[:2]:
        c.state = "built"
        c.save()
        Car.create(project=project, container=c, path=f"/staging/{project.name}/{c.seq:06d}.car",
                   payload_cid=f"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbz{c.seq:02d}",
                   piece_cid=f"baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2m{c.seq:02d}",
                   car_size=c.predicted_size, padded_piece_size=2 * 1024 * 1024 * 2,
                   built_at=1_764_000_000.0 + c.seq, host="stage1")  # fixed: the snapshots show them
    if len(boxes) > 2:
        boxes[2].state = "building"
        boxes[2].save()
    force_status(project, "building")
    now = time.time()
    Worker.create(host="stage1", pid=4242, project=project, state="building",
                  container=boxes[2] if len(boxes) > 2 else None, bytes_done=700_000, bytes_total=1_900_000,
                  rate=52_000_000, staging_total=100 << 30, staging_used=62 << 30, staging_free=38 << 30,
                  rss=80 << 20, cpu_percent=97.0, heartbeat_at=now + 3600)
    Worker.create(host="stage1", pid=4243, project=project, state="waiting" if waiting else "idle",
                  message=("waiting for staging space: budget 228.0 MiB of 300 MiB used, next CAR needs 236.0 MiB"
                           if waiting else None),
                  staging_total=100 << 30, staging_used=62 << 30, staging_free=38 << 30, rss=60 << 20,
                  cpu_percent=0.5, heartbeat_at=now + 3600)


def showcase(base: Path, *, files: int, second_files: int) -> Project:
    """The scene the snapshots and the README screenshots show: a scanned, packed project mid-build (one worker
    waiting for staging space) beside a second, fresh project."""
    project = make_project(base, files=files)
    scan(project)
    containerize(project)
    fake_build_rows(project, waiting=True)
    make_project(base / "second", name="archive-2019", files=second_files)
    return project


class StallMeter:
    """The event loop's longest gap between 20 ms ticks: how long the app stalled."""

    def __init__(self, app):
        self.last = time.monotonic()
        self.worst = 0.0
        app.set_interval(0.02, self.tick)

    def tick(self):
        now = time.monotonic()
        self.worst = max(self.worst, now - self.last)
        self.last = now
