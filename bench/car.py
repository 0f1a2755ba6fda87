#!/usr/bin/env python3
"""CAR writing throughput and `ptolemy car create`'s peak RSS, with baselines from the same run.

    .venv/bin/python bench/car.py [--size 1GiB] [--files 20000] [--repeat 2] [--with-commp] [--keep]
                                  [--out-dir /dev/shm] [--sha256-engine python] [--ratio-only]

Creates in /tmp (deleted afterwards unless --keep): one SIZE file of pseudo-random bytes and a tree of FILES small
files (1–48 KiB in 100 directories). Reads both once into the page cache, then times, best of --repeat:
  - baselines: reading the big file (`cat FILE > /dev/null` equivalent, 4 MiB reads) and read + hashlib.sha256
    of every 256 KiB chunk on one thread (what a CAR writer cannot beat on one core);
  - write_car() of the big file and of the tree into a fresh file in /tmp (core API, in process);
  - `ptolemy car create` of both as a subprocess, with its peak RSS (psutil polling, children included) and,
    with --with-commp, the piece CID computed on the way (CommP sink) as the CLI always does.
MB = 10^6 bytes of source data per second. Ratios are to the single-thread read+SHA-256 baseline. "cpu" is the
CPU time (user + sys, all threads) of the timed run: on a machine shared with other work, wall-clock MB/s
swings, CPU seconds per GB do not.

Before those: the ratio the speed target is stated in, CPU seconds (rusage of the child, all threads) of `ptolemy
car create` of the big file (CAR and CommP, as the CLI always does) over those of `openssl dgst -sha256` of the
same file, medians of alternating runs (at least 3); --ratio-only stops there (and makes no small files).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from ptolemy_tui.core.car import SourceEntry, entries_for_paths, write_car  # noqa: E402
from benchkit import compile_package, parse_size  # noqa: E402


def make_big(path: str, size: int) -> None:
    block = 1 << 20
    with open(path, "wb") as f:
        for i in range(0, size, block):
            f.write(hashlib.shake_256(b"bench %d" % i).digest(min(block, size - i)))


def make_tree(root: str, count: int) -> int:
    total = 0
    for i in range(count):
        d = os.path.join(root, "dir%03d" % (i % 100))
        os.makedirs(d, exist_ok=True)
        size = 1024 + (i * 7919) % (47 * 1024)
        with open(os.path.join(d, "file%06d.bin" % i), "wb") as f:
            f.write(hashlib.shake_256(b"small %d" % i).digest(size))
        total += size
    return total


def warm(paths: list[str]) -> None:
    for p in paths:
        for dirpath, _, files in os.walk(p) if os.path.isdir(p) else [(os.path.dirname(p), [], [os.path.basename(p)])]:
            for name in files:
                with open(os.path.join(dirpath, name), "rb") as f:
                    while f.read(8 << 20):
                        pass


CPU = {}  # label -> CPU seconds (user + sys, all threads) of the best run: robust to a busy machine


def best(repeat: int, fn, label: str = "") -> float:
    import resource

    times = []
    for _ in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        fn()
        wall = time.perf_counter() - t
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        if not times or wall < min(times):
            CPU[label] = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
        times.append(wall)
    return min(times)


def baseline_read(path: str) -> None:
    buf = bytearray(4 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def baseline_sha(path: str) -> None:
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            for s in range(0, n, 262144):
                hashlib.sha256(view[s:min(s + 262144, n)]).digest()


def car_in_process(entries, out_path: str, sink=None) -> None:
    if os.path.exists(out_path):
        os.unlink(out_path)
    with open(out_path, "w+b") as f:
        write_car(entries, f, sink=sink)


def cli_run(args: list[str], out_path: str) -> tuple[float, int, str]:
    """Wall time, peak RSS (bytes, process tree) and stdout of `ptolemy car create`."""
    import psutil

    if os.path.exists(out_path):
        os.unlink(out_path)
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ptolemy_tui", "car", "create", *args, "-o", out_path],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - t
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"ptolemy car create failed ({proc.returncode})")
    return wall, peak, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--with-commp", action="store_true", help="also time write_car with the CommP sink")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--ratio-only", action="store_true",
                    help="only `ptolemy car create` CPU / `openssl dgst -sha256` CPU on the big file (target <= 2.7)")
    ap.add_argument("--out-dir", default=None,
                    help="where the CARs go (default: the work dir in /tmp; /dev/shm takes the disk out)")
    ap.add_argument("--sha256-engine", default=None,
                    help="leaf hashing engine (sets PTOLEMY_SHA256_ENGINE: c-avx512, c-sha-ni, c-portable, python)")
    args = ap.parse_args()
    compile_package()
    if args.sha256_engine:
        os.environ["PTOLEMY_SHA256_ENGINE"] = args.sha256_engine
    from ptolemy_tui.core import sha256_batch

    print(f"leaf SHA-256 engine: {sha256_batch.resolve()[0]}", flush=True)
    size = parse_size(args.size)
    work = tempfile.mkdtemp(prefix="ptolemy-bench-car-", dir="/tmp")
    try:
        big = os.path.join(work, "big.bin")
        tree = os.path.join(work, "tree")
        print(f"creating {size / 1e6:.0f} MB file and {args.files} small files in {work} ...", flush=True)
        make_big(big, size)
        tree_bytes = make_tree(tree, args.files) if not args.ratio_only else 0
        warm([big, tree] if not args.ratio_only else [big])
        out = os.path.join(args.out_dir or work, "ptolemy-bench-out.car")
        from cpu_ratio import compare, openssl_sha256, ptolemy
        from ptolemy_tui.core import commp

        print(f"CommP engine (the CLI's sink): {commp.engine_name()} ({commp.engine_reason()})", flush=True)
        compare("ptolemy car create (CAR + CommP) of the big file", ptolemy("car", "create", big, "-o", out),
                openssl_sha256(big), max(3, args.repeat))
        if args.ratio_only:
            return
        rows = []

        def row(label, seconds, nbytes, extra=""):
            rows.append((label, seconds, nbytes / seconds / 1e6, extra))
            cpu = CPU.pop("x", None)
            cpu_text = f"cpu {cpu:5.2f} s" if cpu is not None else " " * 11
            print(f"{label:<44} {seconds:7.2f} s  {cpu_text}  {nbytes / seconds / 1e6:8.0f} MB/s  {extra}",
                  flush=True)

        t_read = best(args.repeat, lambda: baseline_read(big), "x")
        row("baseline: read big file (cat > /dev/null)", t_read, size)
        t_sha = best(args.repeat, lambda: baseline_sha(big), "x")
        row("baseline: read + sha256, 1 thread", t_sha, size)
        sha_rate = size / t_sha

        big_entries = [SourceEntry(b"big.bin", big, 0, size)]
        t = best(args.repeat, lambda: car_in_process(big_entries, out), "x")
        row("write_car: 1 big file", t, size, f"x{size / t / sha_rate:.2f} of sha256")
        if args.with_commp:
            from ptolemy_tui.core.commp import CommP

            t = best(args.repeat, lambda: car_in_process(big_entries, out, CommP(deferred_prefix=59, threads=2)), "x")
            row("write_car + CommP sink: 1 big file", t, size, f"x{size / t / sha_rate:.2f} of sha256")
        tree_entries = entries_for_paths([tree])
        t = best(args.repeat, lambda: car_in_process(tree_entries, out), "x")
        row(f"write_car: {args.files} small files", t, tree_bytes, f"{args.files / t:.0f} files/s")
        t_walk = best(args.repeat, lambda: entries_for_paths([tree]))
        print(f"{'  (of which walking the tree)':<44} {t_walk:7.2f} s")

        for label, paths, nbytes in (("ptolemy car create: 1 big file", [big], size),
                                     (f"ptolemy car create: {args.files} small files", [tree], tree_bytes)):
            wall, peak, stdout = cli_run(paths, out)
            row(label, wall, nbytes, f"peak RSS {peak / 2**20:.0f} MiB; " + " ".join(stdout.split()))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            if args.out_dir and os.path.exists(os.path.join(args.out_dir, "ptolemy-bench-out.car")):
                os.unlink(os.path.join(args.out_dir, "ptolemy-bench-out.car"))


if __name__ == "__main__":
    main()
