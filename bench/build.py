#!/usr/bin/env python3
"""End-to-end build throughput: real worker subprocesses, real store, a mixed tree; the two-pass way beside it.

    .venv/bin/python bench/build.py [--size 2GiB] [--workers 2] [--car-size 256MiB] [--keep]

Creates in /tmp (deleted afterwards unless --keep) a SIZE tree of pseudo-random bytes: ~40 % in a few large
files (sharded at 128 MiB), ~40 % in 1–16 MiB files, ~20 % in 4–128 KiB files in nested directories. Scans,
containerizes and reads it once into the page cache, then measures, in this one run:
  1. one worker (`ptolemy build --mode serial`), CAR size --car-size: end-to-end MB/s (start of the build to the
     project being built, process start-up included), the worker's peak RSS, and the source bytes it read
     (rchar of the worker process, so 1.00x = every source byte read once);
  2. the same with 4x bigger CARs: peak RSS must not grow with the CAR size;
  3. --workers workers in blitz mode: whole-build MB/s and each worker's MB/s (its containers' bytes over their
     build seconds);
  4. the two-pass way on the same containers, in this process: write_car() without a sink into a file, then
     commp_of_file() of that file (threads=2, as the worker's CommP), timed separately and together; once with
     the CAR still in the page cache, once with it dropped (real 32 GiB CARs are re-read from the disk).
MB = 10^6 bytes of source data. The workers' CommP and the two-pass CommP use the same engine.
"""
from __future__ import annotations

import argparse
import os
import resource
import random
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import psutil  # noqa: E402
from benchkit import TreeWriter, compile_package, parse_size  # noqa: E402

MB = 1e6


def make_tree(root: str, size: int, seed: int = 1) -> tuple[int, int]:
    rng = random.Random(seed)
    tree = TreeWriter(root)
    write = tree.write

    large = int(size * 0.4)
    for i in range(3):
        write(f"large/big{i}.bin", large // 3)
    medium = int(size * 0.4)
    i = 0
    while medium > 0:
        n = min(medium, rng.randint(1 << 20, 16 << 20))
        write(f"medium/m{i % 10}/file{i:05d}.dat", n)
        medium -= n
        i += 1
    small = size - tree.total
    i = 0
    while small > 0:
        n = min(small, rng.randint(4 << 10, 128 << 10))
        write(f"small/d{i % 50:02d}/s{i % 7}/f{i:06d}.txt", n)
        small -= n
        i += 1
    return tree.files, tree.total


def warm(root: str) -> None:
    buf = bytearray(8 << 20)
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb", buffering=0) as fh:
                while fh.readinto(buf):
                    pass


class Sampler:
    """Polls worker processes: peak RSS per pid and their last rchar (bytes read through read syscalls)."""

    def __init__(self):
        self.peak: dict[int, int] = {}
        self.rchar: dict[int, int] = {}
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.1):
            for pid in list(self.pids):
                try:
                    p = psutil.Process(pid)
                    rss = p.memory_info().rss
                    self.peak[pid] = max(self.peak.get(pid, 0), rss)
                    self.rchar[pid] = p.io_counters().read_chars
                except psutil.Error:
                    pass

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()


def setup_project(name: str, src: str, staging: str, car_size: str, workers: int):
    from ptolemy_tui.services import containerize, projects, scan

    project, _ = projects.create(projects.ProjectSpec(name, src, staging, car_size=car_size, shard_size=f"{min(128 << 20, parse_size(car_size))}B",
                                                      workers=workers))
    scan.run_scan(project)
    containerize.containerize(projects.get(name))
    return projects.get(name)


def run_build(project, mode: str, workers: int) -> dict:
    from ptolemy_tui.services import build
    from ptolemy_tui.store.models import Container
    from ptolemy_tui.worker import launch

    sampler = Sampler()
    sampler.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    pids = build.start_build(project, mode=mode, workers=workers)
    sampler.pids.update(pids)
    while not build.build_progress(project)["finished"]:
        time.sleep(0.25)  # light polling: this process must not take CPU from the workers it measures
    wall = time.monotonic() - started
    for proc in launch.children():
        proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, reaped: every thread's CPU time
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sampler.stop()
    boxes = list(Container.select().where(Container.project == project.id))
    data = sum(b.data_bytes for b in boxes)
    per_owner: dict[str, list[float]] = {}
    from ptolemy_tui.store.models import Car

    for car in Car.select(Car, Container).join(Container).where(Car.project == project.id):
        acc = per_owner.setdefault(car.container.claimed_by, [0.0, 0.0])
        acc[0] += car.container.data_bytes
        acc[1] += car.seconds
    states = {b.state for b in boxes}
    return {"wall": wall, "data": data, "cpu": cpu, "containers": len(boxes), "states": states,
            "peak_rss": max(sampler.peak.values()) if sampler.peak else 0,
            "rchar": sum(sampler.rchar.values()),
            "worker_rates": [b / s / MB for b, s in per_owner.values() if s],
            "car_bytes": sum(c.car_size for c in Car.select().where(Car.project == project.id))}


def two_pass(project, scratch: str, cold: bool = False) -> dict:
    """write_car() without a sink, then commp_of_file() of the written CAR, container by container.

    cold: the CAR's pages are dropped from the page cache before CommP reads it back, as happens with real
    (32 GiB) CARs, which do not stay cached: the second pass then reads the staging disk.
    """
    from ptolemy_tui.core.car import SourceEntry, write_car
    from ptolemy_tui.core.packing import CONTAINER_WRAP
    from ptolemy_tui.core.commp import commp_of_file
    from ptolemy_tui.store.models import Car, Container, ContainerItem, File

    root = os.fsencode(project.target_dir)
    t_write = t_commp = 0.0
    cpu0 = time.process_time()
    data = 0
    for box in Container.select().where(Container.project == project.id).order_by(Container.seq):
        items = (ContainerItem.select(ContainerItem, File).join(File)
                 .where(ContainerItem.container == box.id).order_by(ContainerItem.seq))
        entries = [SourceEntry(it.car_path, os.path.join(root, it.file.path), it.offset, it.length) for it in items]
        out = os.path.join(scratch, f"two-pass-{box.seq}.car")
        t0 = time.monotonic()
        with open(out, "wb") as fh:
            result = write_car(entries, fh, wrap=CONTAINER_WRAP)
            fh.flush()
            os.fsync(fh.fileno())
            if cold:
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        t1 = time.monotonic()
        piece = commp_of_file(out, threads=2)
        t2 = time.monotonic()
        car = Car.get(Car.container == box.id)
        assert (str(result.root_cid), piece.piece_cid_v1) == (car.payload_cid, car.piece_cid), "two-pass mismatch"
        t_write += t1 - t0
        t_commp += t2 - t1
        data += box.data_bytes
        os.unlink(out)
    return {"write": t_write, "commp": t_commp, "data": data, "cpu": time.process_time() - cpu0}


def two_pass_child(db_url: str, project_name: str, out_dir: str) -> int:
    """The two-pass way as a worker would run it, in its own process (start-up paid): for each container, read
    its items from the store (the worker's query), write_car() without a sink into a file, fsync, then
    commp_of_file() of it (threads=2, the worker's CommP threads), and record the CAR's entries (the worker's
    bulk insert, rolled back: nothing is kept). Prints nothing; its CPU time is read by the parent."""
    from ptolemy_tui.core.car import write_car
    from ptolemy_tui.core.commp import commp_of_file
    from ptolemy_tui.core.packing import CONTAINER_WRAP
    from ptolemy_tui.core.sources import source_for
    from ptolemy_tui.store import db
    from ptolemy_tui.store.bulk import insert_rows
    from ptolemy_tui.store.models import Car, CarEntry, Container, Project, database
    from ptolemy_tui.store.transitions import ENTRY_COLUMNS
    from ptolemy_tui.worker.container import Checks, _entries

    db.open_database(db_url, migrate=False)
    project = Project.get(Project.name == project_name)
    source = source_for(project)
    for box in Container.select().where(Container.project == project.id).order_by(Container.seq):
        entries, expected, rows = _entries(box)
        checks = Checks(source, expected)  # the same source checks (a stat before and after each item)
        out = os.path.join(out_dir, f"two-pass-{box.seq}.car")
        with open(out, "wb") as fh:
            result = write_car(entries, fh, wrap=CONTAINER_WRAP, before_read=checks.before,
                               after_read=checks.unchanged_while_read,
                               open_reader=lambda e: source.open(e.source, e.offset, e.length))
            fh.flush()
            os.fsync(fh.fileno())
        piece = commp_of_file(out, threads=2)
        car = Car.get(Car.container == box.id)
        assert (str(result.root_cid), piece.piece_cid_v1) == (car.payload_cid, car.piece_cid), "two-pass mismatch"
        cids = {path: str(cid) for path, cid in result.entry_cids}
        with database.atomic() as txn:
            meta = CarEntry._meta
            insert_rows(database.obj, CarEntry,
                        [meta.fields[n].column_name for n in ("car",) + ENTRY_COLUMNS],
                        [(car.id, path, cids[path], fid, off, ln) for path, fid, off, ln in rows if path in cids])
            txn.rollback()
        os.unlink(out)
    db.close_database()
    return 0


def two_pass_process(db_url: str, project, out_dir: str) -> dict:
    """two_pass_child in a subprocess: (CPU seconds of the child, wall seconds)."""
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run([sys.executable, os.path.abspath(__file__), "--two-pass-child", db_url, project.name, out_dir],
                   check=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu": cpu, "wall": wall}


def reset_build(project) -> None:
    """Back to 'containerized' with every container pending, so the same containers build again."""
    from ptolemy_tui.store.models import Car, Container, Project

    Car.delete().where(Car.project == project.id).execute()
    Container.update(state="pending", claimed_by=None, error=None, bytes_done=0).where(
        Container.project == project.id).execute()
    Project.update(status="containerized", message=None).where(Project.id == project.id).execute()


def cpu_comparison(args, project, db_url: str, staging: str, total: int) -> int:
    """One serial worker build (one pass: CAR and CommP together) against the two-pass process on the same
    containers, alternating; both pay process start-up, the store and the source checks. CPU seconds of the
    children (rusage), so the machine's other users matter less than for wall time."""
    from ptolemy_tui.store.models import Project

    one, two = [], []
    for i in range(args.repeat):
        if i:
            clear_staging(staging, project.name)
            reset_build(project)
        r = run_build(Project.get_by_id(project.id), "serial", 1)
        assert r["states"] == {"built"}, r
        one.append(r)
        two.append(two_pass_process(db_url, project, staging))
    data = one[0]["data"]
    c1 = sorted(r["cpu"] for r in one)[len(one) // 2]
    c2 = sorted(r["cpu"] for r in two)[len(two) // 2]
    print(f"source {data / MB:,.0f} MB in {one[0]['containers']} containers; median of {args.repeat} alternating runs")
    runs1 = ", ".join("%.2f" % r["cpu"] for r in one)
    runs2 = ", ".join("%.2f" % r["cpu"] for r in two)
    print(f"one pass (worker build, serial, start-up and store included): {c1:.2f} CPU-s, "
          f"{data / c1 / MB:.1f} MB per CPU-second; runs: {runs1}")
    print(f"two passes (write_car, then commp_of_file; a process with the same store and checks): {c2:.2f} CPU-s, "
          f"{data / c2 / MB:.1f} MB per CPU-second; runs: {runs2}")
    print(f"two-pass CPU / one-pass CPU: {c2 / c1:.2f}x (target >= 1.10)")
    print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())} (a shared machine)")
    return 0


def clear_staging(staging: str, name: str) -> None:
    shutil.rmtree(os.path.join(staging, name), ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="2GiB")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--car-size", default="256MiB")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--cpu-only", action="store_true",
                    help="only the CPU comparison: one serial worker build and the two-pass process on its containers")
    ap.add_argument("--repeat", type=int, default=1, help="alternate one-pass and two-pass runs this many times")
    ap.add_argument("--two-pass-child", nargs=3, metavar=("DB_URL", "PROJECT", "OUT_DIR"), help=argparse.SUPPRESS)
    ap.add_argument("--staging-dir", help="where CARs are written, by the build and the two-pass baseline alike "
                                          "(default: the work dir in /tmp; /dev/shm takes the disk's fsync out)")
    args = ap.parse_args()
    compile_package()
    if args.two_pass_child:
        return two_pass_child(*args.two_pass_child)
    size = parse_size(args.size)
    car_size = parse_size(args.car_size)

    tmp = tempfile.mkdtemp(prefix="ptolemy-bench-build-", dir="/tmp")
    os.environ["XDG_STATE_HOME"] = os.path.join(tmp, "state")
    os.environ["XDG_DATA_HOME"] = os.path.join(tmp, "data")
    from ptolemy_tui.core.commp import engine_name, engine_reason
    from ptolemy_tui.store import db

    db_url = f"sqlite:///{tmp}/bench.db"
    db.open_database(db_url)
    src = os.path.join(tmp, "src")
    staging = tempfile.mkdtemp(prefix="ptolemy-bench-staging-", dir=args.staging_dir) if args.staging_dir \
        else os.path.join(tmp, "staging")
    try:
        t0 = time.monotonic()
        files, total = make_tree(src, size)
        print(f"tree: {files:,} files, {total / MB:,.0f} MB in {time.monotonic() - t0:.1f}s; CommP engine "
              f"{engine_name()}; {os.cpu_count()} CPUs")
        os.sync()  # the tree's dirty pages are written now, not during the first measured build
        warm(src)

        one = setup_project("one", src, staging, f"{car_size}B", 1)
        print(f"CommP engine: {engine_name()} ({engine_reason()})")
        if args.cpu_only:
            return cpu_comparison(args, one, db_url, staging, total)
        r1 = run_build(one, "serial", 1)
        assert r1["states"] == {"built"}, r1
        clear_staging(staging, "one")
        big = setup_project("onebig", src, staging, f"{car_size * 4}B", 1)
        r2 = run_build(big, "serial", 1)
        assert r2["states"] == {"built"}, r2
        clear_staging(staging, "onebig")
        many = setup_project("blitz", src, staging, f"{car_size}B", args.workers)
        r3 = run_build(many, "blitz", args.workers)
        assert r3["states"] == {"built"}, r3
        tp = two_pass(many, staging)
        tc = two_pass(many, staging, cold=True)

        one_pass = r1["data"] / r1["wall"] / MB
        per_container = sum(r1["worker_rates"]) / len(r1["worker_rates"])
        two = tp["data"] / (tp["write"] + tp["commp"]) / MB
        print()
        print(f"MB per CPU-second (robust on a shared machine): one-pass worker {r1['data'] / r1['cpu'] / MB:.1f} "
              f"(process start-up included), blitz workers {r3['data'] / r3['cpu'] / MB:.1f}, two-pass "
              f"{tp['data'] / tp['cpu'] / MB:.1f} (cached CAR), {tc['data'] / tc['cpu'] / MB:.1f} (CAR from disk)")
        print(f"1 worker, {r1['containers']} CARs of ≤{car_size / MB:,.0f} MB: {one_pass:7.1f} MB/s end to end "
              f"({r1['wall']:.1f}s), container build only {per_container:.1f} MB/s, peak RSS "
              f"{r1['peak_rss'] / MB:.0f} MB, source read {r1['rchar'] / r1['data']:.2f}x")
        print(f"1 worker, {r2['containers']} CARs of ≤{4 * car_size / MB:,.0f} MB: {r2['data'] / r2['wall'] / MB:7.1f} "
              f"MB/s end to end ({r2['wall']:.1f}s), peak RSS {r2['peak_rss'] / MB:.0f} MB "
              f"(x{r2['peak_rss'] / max(1, r1['peak_rss']):.2f} for 4x bigger CARs)")
        rates = ", ".join(f"{r:.1f}" for r in r3["worker_rates"])
        print(f"{args.workers} workers blitz, {r3['containers']} CARs: {r3['data'] / r3['wall'] / MB:7.1f} MB/s whole "
              f"build ({r3['wall']:.1f}s); per worker MB/s: {rates}; peak RSS {r3['peak_rss'] / MB:.0f} MB; "
              f"source read {r3['rchar'] / r3['data']:.2f}x")
        print(f"two-pass (write_car, then commp_of_file), same containers: {two:7.1f} MB/s "
              f"(write {tp['data'] / tp['write'] / MB:.1f} MB/s + CommP {tp['data'] / tp['commp'] / MB:.1f} MB/s, "
              f"{tp['write'] + tp['commp']:.1f}s)")
        print(f"load average during the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
              f"(the machine may be shared: compare figures from one run only)")
        cold = tc["data"] / (tc["write"] + tc["commp"]) / MB
        print(f"two-pass with the CAR re-read from the staging disk (dropped from the cache): {cold:7.1f} MB/s "
              f"(CommP pass {tc['data'] / tc['commp'] / MB:.1f} MB/s)")
        print(f"ratio one-pass (1 worker, container build only) / two-pass: {per_container / two:.2f}x cached CAR, "
              f"{per_container / cold:.2f}x CAR re-read from disk")
        print(f"ratio one-pass (1 worker, process start-up and store included) / two-pass: {one_pass / two:.2f}x")
        return 0
    finally:
        db.close_database()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
