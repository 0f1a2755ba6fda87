"""Test kit for builds: a mixed source tree, a project with containers written straight into the store (the way
scan + containerize leave it), fast worker timings, and waiting for a build to end."""
from __future__ import annotations

import glob
import os
import random
import time
from pathlib import Path

from ptolemy_tui.core.car import SourceEntry, predict_car_size, write_car
from ptolemy_tui.core.commp import commp_of_file
from ptolemy_tui.core.packing import CONTAINER_WRAP
from ptolemy_tui.store.models import Container, ContainerItem, File, Project

FAST = {"PTOLEMY_LEASE_SECONDS": "3", "PTOLEMY_REPORT_SECONDS": "0.3", "PTOLEMY_POLL_SECONDS": "0.2"}


def fast_timings(monkeypatch) -> None:
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)


def make_tree(root: Path, *, seed: int = 7, big: int = 700_000) -> Path:
    """Small and empty files, multi-chunk files, nested directories, odd names (quotes, non-UTF-8 bytes)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    files = {
        b"a.txt": b"hello\n",
        b"empty": b"",
        b"docs/readme.md": b"# readme\n" * 50,
        b"docs/deep/nested/x.bin": rng.randbytes(300_000),  # two chunks
        b"big.bin": rng.randbytes(big),  # sharded when the shard size is smaller
        b"with 'quote\" and space.txt": b"q" * 1000,
        b"latin1-\xe9.dat": rng.randbytes(5000),
        b"media/clip.raw": rng.randbytes(400_000),
        b"media/thumb.raw": rng.randbytes(70_000),
    }
    for rel, data in files.items():
        path = os.path.join(os.fsencode(root), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
    return root


def seed_project(name: str, target: Path, staging: Path, *, per_container: int = 400_000,
                 shard_size: int = 256 * 1024, load_type: str = "blitz", workers: int = 2,
                 staging_budget: int | None = None) -> Project:
    """A containerized project: files in path order, big ones in shards, containers cut at `per_container` bytes."""
    staging.mkdir(parents=True, exist_ok=True)
    project = Project.create(name=name, target_dir=str(target), staging_dir=str(staging), car_size=1 << 30,
                             shard_size=shard_size, load_type=load_type, workers=workers,
                             staging_budget=staging_budget, status="containerized")
    root = os.fsencode(target)
    rels = []
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            rels.append(os.path.relpath(os.path.join(dirpath, n), root))
    pieces = []  # (file, offset, length, shard_index, car_path)
    for rel in sorted(rels):
        st = os.lstat(os.path.join(root, rel))
        f = File.create(project=project, path=rel, name=os.path.basename(rel), size=st.st_size,
                        mtime_ns=st.st_mtime_ns, inode=st.st_ino, kind="file")
        if st.st_size <= shard_size:
            pieces.append((f, 0, st.st_size, None, rel))
        else:
            for n, off in enumerate(range(0, st.st_size, shard_size)):
                pieces.append((f, off, min(shard_size, st.st_size - off), n, rel + b".ptolemy%d" % n))
    groups, current, used = [], [], 0
    for piece in pieces:
        if current and used + piece[2] > per_container:
            groups.append(current)
            current, used = [], 0
        current.append(piece)
        used += piece[2]
    if current:
        groups.append(current)
    for seq, group in enumerate(groups, start=1):
        predicted = predict_car_size([SourceEntry(p[4], b"unused", 0, p[2]) for p in group], wrap=CONTAINER_WRAP)
        box = Container.create(project=project, seq=seq, predicted_size=predicted,
                               data_bytes=sum(p[2] for p in group), item_count=len(group),
                               shard_count=sum(1 for p in group if p[3] is not None))
        for i, (f, off, length, shard, car_path) in enumerate(group):
            ContainerItem.create(container=box, file=f, seq=i, offset=off, length=length, shard_index=shard,
                                 car_path=car_path)
    return project


def reference_car(box: Container, target: Path, out: Path, profile: str = "kubo") -> tuple[str, str, bytes]:
    """The container's CAR written the plain way (write_car, wrapped as containers are, then CommP of the file):
    root, piece CID, bytes."""
    root = os.fsencode(target)
    entries = [SourceEntry(dag_path=it.car_path, source=os.path.join(root, it.file.path), offset=it.offset,
                           length=it.length, kind="symlink" if it.file.kind == "symlink" else "file",
                           link_target=it.file.link_target or b"")
               for it in ContainerItem.select().where(ContainerItem.container == box.id).order_by(ContainerItem.seq)]
    with open(out, "wb") as fh:
        result = write_car(entries, fh, wrap=CONTAINER_WRAP, profile=profile)
    return str(result.root_cid), commp_of_file(str(out)).piece_cid_v1, out.read_bytes()


def wait_for_build(name: str, timeout: float = 60) -> dict:
    """Poll the store until the build is over; returns the final progress document."""
    from ptolemy_tui.services import build

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = build.build_progress(name)
        if doc["finished"]:
            return doc
        time.sleep(0.2)
    raise AssertionError(f"build of {name} did not finish in {timeout}s: {build.build_progress(name)}\n{worker_logs()}")


def wait_until(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{worker_logs()}")


def reap_workers(timeout: float = 20) -> None:
    """Wait for the worker processes this test started to exit (they do once the build is over)."""
    from ptolemy_tui.worker import launch

    deadline = time.monotonic() + timeout
    for proc in launch.children():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001
            proc.kill()
            proc.wait()
    launch.reap()


def worker_logs() -> str:
    from ptolemy_tui.worker import launch

    out = []
    for path in sorted(glob.glob(os.path.join(launch.log_dir(), "*.log"))):
        with open(path, errors="replace") as fh:
            out.append(f"--- {os.path.basename(path)}\n{fh.read()[-3000:]}")
    return "\n".join(out)
