"""Containerize benchmark: 1M scanned files packed into containers (goal < 5 s on SQLite), store included.

    .venv/bin/python bench/pack.py [--files 1000000] [--per-dir 1000] [--car-size 31.5GiB] [--db URL]

Writes the scan's rows straight into a fresh store under /tmp (a million real files would time the disk, not
the packer), runs `containerize` (load, sort, pack with exact CAR sizes, insert the items), prints the time and
the report's figures, and deletes the store. Sizes: log-uniform from 0 to 64 MiB, plus a few files above the
shard size.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptolemy_tui.core.sizes import parse_size  # noqa: E402
from ptolemy_tui.services import containerize, projects  # noqa: E402
from ptolemy_tui.store import db  # noqa: E402
from ptolemy_tui.store.bulk import refresh_statistics  # noqa: E402
from ptolemy_tui.core.states import ProjectStatus  # noqa: E402
from ptolemy_tui.store import transitions  # noqa: E402
from ptolemy_tui.store.models import Directory, database  # noqa: E402


def fill_store(project, files: int, per_dir: int, rng: random.Random) -> int:
    total = 0
    root = Directory.create(project=project, path=b"", name=b"").id
    rows = []
    for d in range(-(-files // per_dir)):
        top = b"set%03d" % (d // 100)
        if d % 100 == 0:
            top_id = Directory.create(project=project, parent=root, path=top, name=top).id
        name = b"batch%05d" % d
        did = Directory.create(project=project, parent=top_id, path=top + b"/" + name, name=name,
                               file_count=min(per_dir, files - d * per_dir)).id
        for n in range(min(per_dir, files - d * per_dir)):
            size = int(2 ** rng.uniform(0, 26)) if rng.random() > 0.0005 else rng.randint(1 << 30, 5 << 30)
            leaf = b"file-%06d.dat" % n
            rows.append((project.id, did, top + b"/" + name + b"/" + leaf, leaf, size, 0, 0, "file", None, None))
            total += size
    cols = '"project_id","directory_id","path","name","size","mtime_ns","inode","kind","link_target","error"'
    ph = ", ".join([database.obj.param] * 10) if hasattr(database.obj, "param") else ", ".join(["?"] * 10)
    cursor = database.obj.cursor()
    if db.is_postgres():
        from psycopg2.extras import execute_values

        with database.atomic():
            execute_values(cursor, f'INSERT INTO "file" ({cols}) VALUES %s', rows, page_size=5000)
        refresh_statistics(database.obj, "file", "directory")  # as a scan does after its bulk load
    else:
        with database.atomic():
            cursor.executemany(f'INSERT INTO "file" ({cols}) VALUES ({ph})', rows)
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--per-dir", type=int, default=1000)
    ap.add_argument("--car-size", default="31.5GiB")
    ap.add_argument("--shard-size", default="1GiB")
    ap.add_argument("--db", help="store URL (default: a fresh SQLite file under /tmp)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ptolemy-bench-pack-")
    try:
        (src := os.path.join(work, "src")) and os.makedirs(src)
        url = args.db or f"sqlite:///{os.path.join(work, 'bench.db')}"
        db.open_database(url)
        project, _ = projects.create(projects.ProjectSpec(f"pack{os.getpid()}", src, os.path.join(work, "stg"),
                                                          car_size=parse_size(args.car_size),
                                                          shard_size=parse_size(args.shard_size)))
        t = time.perf_counter()
        total = fill_store(project, args.files, args.per_dir, random.Random(7))
        print(f"store: {args.files:,} files, {total / (1 << 40):.2f} TiB (rows written in {time.perf_counter() - t:.1f}s)")
        scan = transitions.begin_scan(project, "bench:0")  # the rows stand for a scan: record one through the state machine
        scan.files = args.files
        transitions.finish_scan(project, scan, ProjectStatus.SCANNED, None)
        t, cpu = time.perf_counter(), time.process_time()
        report = containerize.containerize(project)
        took, cpu = time.perf_counter() - t, time.process_time() - cpu
        sizes = report["bytes_per_container"]
        print(f"containerize: {took:.2f}s for {args.files:,} files ({args.files / took:,.0f} files/s; goal < 5 s "
              f"for 1M) on {url.split(':')[0]}; {cpu:.2f}s of CPU")
        print(f"  containers {report['containers']:,}, items {report['items']:,}, shards {report['shards']:,}")
        print(f"  mean fill {report['mean_fill']:.4%} (all but the last), lowest {report['min_fill']:.4%}, "
              f"last {report['last_fill']:.2%}; mean {sum(sizes) / len(sizes) / (1 << 30):.2f} GiB of data per container")
        if args.db:
            projects.delete(project.name)
        db.close_database()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
