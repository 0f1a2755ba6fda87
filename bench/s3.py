#!/usr/bin/env python3
"""Build throughput from S3 beside local disk, in one run: one worker, MB/s, peak RSS.

    .venv/bin/python bench/s3.py [--size 512MiB] [--rtt-ms 30] [--objects 100000] [--keep]

Creates a mixed tree (a few large files, 1-16 MiB files, 4-128 KiB files in nested directories) in a temporary
directory (on /dev/shm when it has room, so the disk does not decide), serves it with a real `rclone serve s3`
on loopback, and builds it three times with one worker (`ptolemy build --workers 1 --wait`), CARs to /dev/shm:

  1. from local disk (the baseline),
  2. from S3 on loopback, no added latency,
  3. from S3 through a delaying TCP proxy on loopback that holds every chunk of data --rtt-ms/2 in each
     direction (so each request waits --rtt-ms more, as across a network; bandwidth is not limited).

MB/s per worker = source bytes / the sum of the containers' build seconds (worker start-up excluded); the
worker's peak RSS is sampled from the store's worker reports. With --objects N it also times the scan of a
bucket of N small objects (listing pages of 1000 keys). The CARs of the three builds must be identical.
MB = 10^6 bytes. Quote `uptime` with the figures: the machine may be shared.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchkit import TreeWriter, compile_package  # noqa: E402

MB = 1e6


def make_tree(root: str, size: int, seed: int = 1, large_only: bool = False) -> tuple[int, int]:
    rng = random.Random(seed)
    tree = TreeWriter(root)
    write = tree.write

    large = size if large_only else size * 4 // 10
    for i in range(max(1, large // (64 << 20))):
        write(f"large/big-{i}.bin", min(64 << 20, large))
    medium = 0 if large_only else size * 4 // 10
    i = 0
    while medium > 0:
        n = min(medium, rng.randint(1 << 20, 16 << 20))
        write(f"medium/d{i % 7}/file-{i}.bin", n)
        medium -= n
        i += 1
    small = 0 if large_only else size - tree.total
    i = 0
    while small > 0:
        n = min(small, rng.randint(4 << 10, 128 << 10))
        write(f"small/s{i % 13}/t{i % 5}/f-{i}.dat", n)
        small -= n
        i += 1
    return tree.files, tree.total


class DelayProxy:
    """A TCP proxy on loopback that delivers every chunk `delay` seconds after it arrives, both ways."""

    def __init__(self, target_port: int, delay: float):
        self.target_port = target_port
        self.delay = delay
        self.port = None
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _pump(self, reader, writer) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver():
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        task = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(1 << 20)
                if not data:
                    break
                queue.put_nowait((self.loop.time() + self.delay, data))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait((0, None))
        try:
            await task
        except (ConnectionError, OSError):
            pass

    async def _client(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))


def ptolemy(db: str, *argv: str, env: dict | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "ptolemy_tui", "--db", db, *argv], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))
    if proc.returncode != 0:
        raise SystemExit(f"ptolemy {' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _cpu_seconds(proc) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def build_once(db: str, name: str, target: str, staging: str, s3: list[str], car_size: str, server=None) -> dict:
    """One build; also the CPU seconds the S3 server and the whole machine spent during it (on 2 cores the
    server competes with the worker it feeds)."""
    import psutil

    from ptolemy_tui.store import db as store_db
    from ptolemy_tui.store.models import Car, Project, Worker

    ptolemy(db, "project", "create", name, "--target", target, "--staging", staging, "--car-size", car_size,
            "--shard-size", "32MiB", "--workers", "1", *s3)
    ptolemy(db, "scan", name)
    ptolemy(db, "containerize", name)
    peak = [0]
    done = threading.Event()

    def sample():
        store_db.open_database(db)
        while not done.is_set():
            for (rss,) in Worker.select(Worker.rss).join(Project).where(Project.name == name).tuples():
                peak[0] = max(peak[0], rss or 0)
            time.sleep(0.2)
        store_db.close_database()

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    started = time.monotonic()
    machine = psutil.cpu_times()
    served = _cpu_seconds(server) if server is not None else 0.0
    me = psutil.Process()  # this process: the delay proxy's thread, and the RSS sampler
    mine = _cpu_seconds(me)
    ptolemy(db, "build", name, "--workers", "1", "--wait")
    wall = time.monotonic() - started
    after = psutil.cpu_times()
    machine_cpu = sum(getattr(after, f) - getattr(machine, f) for f in ("user", "system", "softirq", "irq"))
    server_cpu = _cpu_seconds(server) - served if server is not None else 0.0
    bench_cpu = _cpu_seconds(me) - mine
    done.set()
    t.join()
    store_db.open_database(db)
    cars = list(Car.select().join(Project).where(Project.name == name).order_by(Car.container))
    seconds = sum(c.seconds for c in cars)
    ids = [(c.payload_cid, c.piece_cid) for c in cars]
    store_db.close_database()
    docs = json.loads(ptolemy(db, "status", name, "--json"))
    return {"bytes": docs["bytes"], "seconds": seconds, "wall": wall, "rss": peak[0], "cids": ids,
            "machine_cpu": machine_cpu, "server_cpu": server_cpu, "bench_cpu": bench_cpu}


def scan_objects(db: str, served: str, url: str, count: int) -> float:
    bucket = os.path.join(served, "many")
    for i in range(count):
        path = os.path.join(bucket, f"p{i % 100:02d}", f"o{i:06d}.txt")
        if i % 100 == 0 or not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(b"x")
    ptolemy(db, "project", "create", "many", "--target", "s3://many", "--staging", os.path.join(served, "..", "stg-many"),
            "--s3-endpoint", url, "--no-sign-request")
    started = time.monotonic()
    doc = json.loads(ptolemy(db, "scan", "many", "--json"))
    took = time.monotonic() - started
    assert doc["files"] == count, doc
    return took


def main() -> int:
    import psutil

    from ptolemy_tui.core.sizes import parse_size
    from tests.s3server import S3Server

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="512MiB")
    ap.add_argument("--rtt-ms", type=float, default=30.0)
    ap.add_argument("--car-size", default="128MiB")
    ap.add_argument("--objects", type=int, default=0, help="also time the scan of a bucket of this many objects")
    ap.add_argument("--large-only", action="store_true", help="a tree of 64 MiB objects only")
    ap.add_argument("--scan-only", action="store_true", help="only the --objects scan, no builds")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    compile_package()
    size = parse_size(args.size)
    base = "/dev/shm" if shutil.disk_usage("/dev/shm").free > 3 * size + (1 << 30) else None
    work = tempfile.mkdtemp(prefix="ptolemy-bench-s3-", dir=base)
    os.environ.update({"AWS_EC2_METADATA_DISABLED": "true", "XDG_STATE_HOME": os.path.join(work, "state"),
                       "XDG_DATA_HOME": os.path.join(work, "data")})
    served = os.path.join(work, "served")
    server = None
    try:
        files, total = make_tree(os.path.join(served, "tree"), 0 if args.scan_only else size,
                                 large_only=args.large_only)
        print(f"tree: {files:,} files, {total / MB:,.0f} MB in {work}")
        server = S3Server(served, changing=False).start()  # the scan warms rclone's ETags (MD5s), as S3 has them
        proxy = DelayProxy(server.port, args.rtt_ms / 2000)
        db = f"sqlite:///{work}/bench.db"
        s3_direct = ["--s3-endpoint", server.url, "--no-sign-request"]
        s3_slow = ["--s3-endpoint", f"http://127.0.0.1:{proxy.port}", "--no-sign-request"]
        runs = [("local disk", os.path.join(served, "tree"), []),
                ("S3 loopback", "s3://tree", s3_direct),
                (f"S3 +{args.rtt_ms:g} ms RTT", "s3://tree", s3_slow)]
        results = []
        for i, (label, target, s3) in enumerate([] if args.scan_only else runs):
            r = build_once(db, f"run{i}", target, os.path.join(work, f"stg{i}"), s3, args.car_size,
                           psutil.Process(server.proc.pid))
            results.append((label, r))
            shutil.rmtree(os.path.join(work, f"stg{i}"), ignore_errors=True)
        same = True
        if results:
            local = results[0][1]
            local_rate = local["bytes"] / local["seconds"] / MB
            print(f"{'source':<22} {'MB/s per worker':>16} {'x local':>8} {'wall s':>7} {'peak RSS MiB':>13} "
                  f"{'CPU s/GB all':>13} {'of it S3 server':>16}")
            for label, r in results:
                rate = r["bytes"] / r["seconds"] / MB
                gb = r["bytes"] / 1e9
                print(f"{label:<22} {rate:>16.0f} {rate / local_rate:>8.2f} {r['wall']:>7.1f} "
                      f"{r['rss'] / 2**20:>13.0f} {r['machine_cpu'] / gb:>13.2f} {r['server_cpu'] / gb:>16.2f}")
            # Where the server (and the delay proxy, in this process) share the worker's cores, a client that
            # cost no more CPU than a local read would still lose their CPU: local's CPU per GB over (that + theirs)
            # bounds the ratio, whatever the client.
            local_gb = local["bytes"] / 1e9
            local_cpu, local_bench_cpu = local["machine_cpu"] / local_gb, local["bench_cpu"] / local_gb
            for label, r in results[1:]:
                gb = r["bytes"] / 1e9
                others = r["server_cpu"] / gb + max(0.0, r["bench_cpu"] / gb - local_bench_cpu)
                print(f"{label}: bound {local_cpu / (local_cpu + others):.2f}x local on these {os.cpu_count()} cores "
                      f"(local {local_cpu:.2f} CPU-s/GB; the server and the proxy {others:.2f} more), whatever the client")
            same = all(r["cids"] == local["cids"] for _l, r in results)
            print(f"CARs identical across the three builds (payload CID, piece CID): {same}")
        if args.objects:
            took = scan_objects(db, served, server.url, args.objects)
            print(f"scan of {args.objects:,} objects from S3 loopback: {took:.1f} s ({args.objects / took:,.0f}/s)")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0 if same else 1
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
