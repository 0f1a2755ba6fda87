"""Real data for the screen tests: the demo tree on disk, a project made by the projects service, and its scan,
containers, CARs and workers — by the pipeline services where they exist, else written row by row into the same
SQLite store (so every screen reads real rows either way)."""
from __future__ import annotations

import asyncio
import importlib
import os
import time
from pathlib import Path

from ptolemy_tui.services import demo, projects
from ptolemy_tui.store.models import Car, Container, ContainerItem, Directory, File, Project, Scan, Worker
from tests.states import force_status


def have(module: str, name: str) -> bool:
    try:
        return hasattr(importlib.import_module(f"ptolemy_tui.services.{module}"), name)
    except ImportError:
        return False


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
    if have("scan", "run_scan"):
        from ptolemy_tui.services.scan import run_scan

        run_scan(project)
        return
    _manual_scan(project)


def containerize(project: Project) -> None:
    if have("containerize", "containerize"):
        from ptolemy_tui.services.containerize import containerize as pack

        pack(project)
        return
    _manual_pack(project)


def _manual_scan(project: Project) -> None:
    root_dir = Path(project.target_dir)
    scan_row = Scan.create(project=project, state="running")
    dirs: dict[bytes, Directory] = {}
    root = Directory.create(project=project, parent=None, path=b"", name=b"")
    dirs[b""] = root
    n_files = total = 0
    for current, subdirs, filenames in os.walk(root_dir):
        subdirs.sort()
        rel = os.path.relpath(current, root_dir).encode()
        rel = b"" if rel == b"." else rel
        parent = dirs[rel]
        for d in subdirs:
            path = (rel + b"/" + d.encode()) if rel else d.encode()
            dirs[path] = Directory.create(project=project, parent=parent, path=path, name=d.encode())
        for f in sorted(filenames):
            path = (rel + b"/" + f.encode()) if rel else f.encode()
            st = os.stat(os.path.join(current, f))
            File.create(project=project, directory=parent, path=path, name=f.encode(), size=st.st_size,
                        mtime_ns=st.st_mtime_ns, inode=st.st_ino)
            n_files += 1
            total += st.st_size
    # aggregates, deepest first
    for path in sorted(dirs, key=lambda p: -p.count(b"/") - (1 if p else 0)):
        d = dirs[path]
        files = list(File.select().where(File.directory == d))
        kids = list(Directory.select().where(Directory.parent == d))
        d.file_count, d.dir_count = len(files), len(kids)
        d.total_bytes = sum(f.size for f in files) + sum(k.total_bytes for k in kids)
        d.total_files = len(files) + sum(k.total_files for k in kids)
        d.save()
    scan_row.state, scan_row.files, scan_row.bytes, scan_row.entries = "done", n_files, total, n_files + len(dirs)
    scan_row.directories, scan_row.finished_at = len(dirs), time.time()
    scan_row.save()
    force_status(project, "scanned")


def _manual_pack(project: Project) -> None:
    seq, size, items = 0, 0, []
    boxes: list[list[tuple[File, int, int, int | None]]] = [[]]
    for f in File.select().where(File.project == project).order_by(File.path):
        pieces = [(0, f.size, None)] if f.size <= project.shard_size else [
            (o, min(project.shard_size, f.size - o), i) for i, o in enumerate(range(0, f.size, project.shard_size))]
        for offset, length, shard in pieces:
            if size + length > project.car_size * 0.95 and boxes[-1]:
                boxes.append([])
                size = 0
            boxes[-1].append((f, offset, length, shard))
            size += length
    for seq, box in enumerate(boxes):
        data_bytes = sum(length for _, _, length, _ in box)
        c = Container.create(project=project, seq=seq, predicted_size=data_bytes + 4096, data_bytes=data_bytes,
                             item_count=len(box), shard_count=sum(1 for b in box if b[3] is not None))
        for i, (f, offset, length, shard) in enumerate(box):
            name = f.path + (f".ptolemy{shard}".encode() if shard is not None else b"")
            ContainerItem.create(container=c, file=f, seq=i, offset=offset, length=length, shard_index=shard,
                                 car_path=name)
    force_status(project, "containerized")


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
