"""Scan benchmark: files/s into SQLite on a warm cache, beside `find -printf` on the same tree.

    .venv/bin/python bench/scan.py [--files 300000] [--per-dir 1000] [--threads 8] [--walker process|threads]
                                   [--db URL]

Creates its tree under /tmp (or --dir), runs find once to warm the cache and once timed, runs
`run_scan` into a fresh store, prints the figures and the ratio scan/find (goal ≥ 0.3), deletes everything.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptolemy_tui.services import projects, scan  # noqa: E402
from ptolemy_tui.store import db  # noqa: E402


def make_tree(root: str, files: int, per_dir: int) -> None:
    for d in range(-(-files // per_dir)):
        sub = os.path.join(root, f"d{d // 100:03d}", f"s{d:05d}")
        os.makedirs(sub)
        for n in range(min(per_dir, files - d * per_dir)):
            fd = os.open(os.path.join(sub, f"file-{n:05d}.dat"), os.O_CREAT | os.O_WRONLY, 0o644)
            if n % 7 == 0:
                os.write(fd, b"x" * (n % 4096))
            os.close(fd)


def timed_find(root: str) -> float:
    t = time.perf_counter()
    subprocess.run(["find", root, "-printf", r"%s %T@ %p\n"], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=300_000)
    ap.add_argument("--per-dir", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=scan.DEFAULT_THREADS)
    ap.add_argument("--walker", choices=("process", "threads"), default="process",
                    help="walk in a child process (the default) or in threads of this one")
    ap.add_argument("--db", help="store URL (default: a fresh SQLite file under the work directory)")
    ap.add_argument("--dir", help="where to create the tree (default: /tmp)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ptolemy-bench-scan-", dir=args.dir)
    try:
        src = os.path.join(work, "src")
        os.makedirs(src)
        t = time.perf_counter()
        make_tree(src, args.files, args.per_dir)
        print(f"tree: {args.files:,} files in {-(-args.files // args.per_dir):,} directories "
              f"(created in {time.perf_counter() - t:.1f}s)")
        timed_find(src)  # warm the cache
        find_s = min(timed_find(src) for _ in range(2))
        url = args.db or f"sqlite:///{os.path.join(work, 'bench.db')}"
        db.open_database(url)
        project, _ = projects.create(projects.ProjectSpec(f"bench{os.getpid()}", src, os.path.join(work, "staging")))
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        t, cpu = time.perf_counter(), time.process_time()
        result = scan.run_scan(project, threads=args.threads, walker_mode=args.walker)
        scan_s, cpu = time.perf_counter() - t, time.process_time() - cpu
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        walker_cpu = (after.ru_utime + after.ru_stime) - (kids.ru_utime + kids.ru_stime)
        if args.db:
            projects.delete(project.name)
        db.close_database()
        entries = result.entries
        print(f"find -printf: {find_s:.2f}s  ({entries / find_s:,.0f} entries/s)")
        print(f"ptolemy scan: {scan_s:.2f}s  ({result.files / scan_s:,.0f} files/s, {entries / scan_s:,.0f} entries/s, "
              f"{args.threads} threads, {args.walker} walker, {url.split(':')[0]}; {cpu:.2f}s of CPU "
              f"+ {walker_cpu:.2f}s in the walker process)")
        print(f"ratio scan/find: {find_s / scan_s:.2f}  (goal >= 0.3; target >= 100k files/s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
