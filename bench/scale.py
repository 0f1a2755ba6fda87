"""Scale benchmark: scan and containerize of N small files on SQLite and PostgreSQL, in the same run.

    .venv/bin/python bench/scale.py [--files 100000,1000000] [--ten-million] [--tree-dir /dev/shm]
                                    [--pg URL] [--no-tui]

For each N it writes a real tree of N small files (1000 a directory, 1–2000 bytes each; on tmpfs where there
is room, so the walk times the store and not the disk), then for each store runs `ptolemy scan` and `ptolemy
containerize` as their own processes and reports wall seconds and the peak RSS of each (wait4's rusage), the
PostgreSQL/SQLite ratio, and the growth of containerize's peak RSS from the smallest N to the largest.
Then, on the largest SQLite project, it drives the TUI with the pilot and reports key latency (median, p90,
max: from the key to its answer on screen, a tab's fresh data included) and the event loop's longest stall
while browsing, and again while rescans and re-packs of the project run back to back in their own processes.

PostgreSQL: --pg URL (an empty database it may fill), else a throwaway cluster from tests/pgserver.py
(initdb/pg_ctl, as the tests do).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from benchkit import compile_package  # noqa: E402  (bench/ is the script's own directory)

PER_DIR = 1000


def make_tree(root: str, files: int) -> None:
    rng = random.Random(files)
    payload = rng.randbytes(2000)
    for d in range(-(-files // PER_DIR)):
        top = os.path.join(root, f"set{d // 100:03d}", f"batch{d:05d}")
        os.makedirs(top, exist_ok=True)
        for n in range(min(PER_DIR, files - d * PER_DIR)):
            fd = os.open(os.path.join(top, f"file-{n:04d}.dat"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, payload[:rng.randint(1, 2000)])
            os.close(fd)


def run(argv: list[str], env: dict) -> tuple[float, int]:
    """Run a ptolemy command; (wall seconds, peak RSS bytes) of that process alone."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ptolemy_tui", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"ptolemy {' '.join(argv)} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss * 1024


def measure(url: str, name: str, tree: str, staging: str, env: dict) -> dict:
    run(["--db", url, "project", "create", name, "--target", tree, "--staging", staging, "--car-size", "31.5GiB"], env)
    scan_s, scan_rss = run(["--db", url, "scan", name], env)
    pack_s, pack_rss = run(["--db", url, "containerize", name], env)
    rescan_s, rescan_rss = run(["--db", url, "scan", name], env)
    return {"scan": scan_s, "scan_rss": scan_rss, "pack": pack_s, "pack_rss": pack_rss, "rescan": rescan_s,
            "rescan_rss": rescan_rss}


def store_size(url: str) -> int:
    """Bytes the store takes on disk (cumulative over the projects a PostgreSQL database holds)."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_database_size(current_database())")
        return cur.fetchone()[0]




TAB_KEYS = {"1": "overview", "2": "tree", "3": "containers", "4": "build", "5": "cars", "6": "log"}


async def _press(pilot, key: str) -> float:
    """Seconds from a key to its answer on screen: the key and all it queued handled, and, for a tab key, the
    tab's first refresh from the store shown. (The pilot's own press() also waits until the whole process is
    idle, every thread included, and for animations: that measured the polling threads, not the operator.)"""
    from textual import events

    app = pilot.app
    screen = app.screen
    pane = None
    if key in TAB_KEYS and hasattr(screen, "pane"):
        pane = screen.pane(TAB_KEYS[key])
        before = pane.polls
    started = time.perf_counter()
    event = events.Key(key, key if len(key) == 1 else None)
    event.set_sender(app)
    app._driver.send_message(event)
    await pilot._wait_for_screen()
    while pane is not None and pane.polls == before and time.perf_counter() - started < 10:
        await asyncio.sleep(0.002)
    await pilot._wait_for_screen()
    return time.perf_counter() - started


async def _browse(url: str, name: str, keys: list[str]) -> tuple[list[float], float]:
    from ptolemy_tui.screens.app import PtolemyApp
    from ptolemy_tui.store import db
    from tests.screens.helpers import StallMeter

    db.open_database(url)
    app = PtolemyApp(project=name, tab="tree", watch_tty=False)
    latencies = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(2.0)
        meter = StallMeter(app)
        for key in keys:
            latencies.append(await _press(pilot, key))
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        worst = meter.worst
    db.close_database()
    return latencies, worst


BROWSE_KEYS = (["enter", "down", "down", "enter", "j", "j", "k", "o", "o", "3", "G", "g", "down", "down", "4",
                "1", "2", "end", "home", "6", "2"] * 3)


def tui_latency(url: str, name: str, env: dict) -> dict:
    from ptolemy_tui.worker import launch

    os.environ.update({k: v for k, v in env.items() if k.startswith(("XDG_", "PTOLEMY_"))})
    idle, idle_stall = asyncio.run(_browse(url, name, BROWSE_KEYS))
    browsing = threading.Event()
    scans = [0]

    def rescan_all_along() -> None:  # a rescan, then a re-pack, and again, so every key meets one; at the
        # niceness the TUI gives the jobs it starts (worker/launch.JOB_NICENESS)
        while not browsing.is_set():
            for step in (["scan", name], ["containerize", name, "--reset"]):
                subprocess.run(["nice", "-n", str(launch.JOB_NICENESS), sys.executable, "-m", "ptolemy_tui", "--db",
                                url, *step], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                scans[0] += 1

    scanner = threading.Thread(target=rescan_all_along, daemon=True)
    scanner.start()
    try:
        busy, busy_stall = asyncio.run(_browse(url, name, BROWSE_KEYS))
    finally:
        browsing.set()
        scanner.join()
    return {"idle": idle, "idle_stall": idle_stall, "busy": busy, "busy_stall": busy_stall, "scans": scans[0]}


def _lat(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return (f"median {statistics.median(ordered) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, "
            f"max {ordered[-1] * 1000:.0f} ms")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", default="100000,1000000")
    ap.add_argument("--ten-million", action="store_true", help="add N = 10M (needs ~45 GB of tmpfs or disk)")
    ap.add_argument("--tree-dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ap.add_argument("--pg", help="PostgreSQL URL of an empty database (default: a throwaway cluster)")
    ap.add_argument("--no-tui", action="store_true")
    args = ap.parse_args()
    compile_package()
    sizes = [int(n) for n in args.files.split(",")] + ([10_000_000] if args.ten_million else [])
    work = tempfile.mkdtemp(prefix="ptolemy-bench-scale-", dir=args.tree_dir)
    env = dict(os.environ, PYTHONPATH=HERE, XDG_DATA_HOME=os.path.join(work, "xdg-data"),
               XDG_STATE_HOME=os.path.join(work, "xdg-state"))
    cluster = None
    try:
        pg_url = args.pg
        if not pg_url:
            from tests import pgserver

            cluster = pgserver.ThrowawayCluster()
            pg_url = pgserver.create_database(cluster.start())
        print(f"load average {os.getloadavg()[0]:.2f}; tree under {work}")
        results: dict[int, dict[str, dict]] = {}
        for n in sizes:
            tree = os.path.join(work, f"tree{n}")
            t = time.perf_counter()
            make_tree(tree, n)
            print(f"N = {n:,}: tree written in {time.perf_counter() - t:.1f}s")
            results[n] = {}
            for store, url in (("sqlite", f"sqlite:///{os.path.join(work, f'scale{n}.db')}"), ("postgres", pg_url)):
                r = results[n][store] = measure(url, f"scale{n}", tree, os.path.join(work, "staging"), env)
                r["store_bytes"] = store_size(url)
                print(f"  {store:8s}  scan {r['scan']:6.1f}s ({n / r['scan']:,.0f} files/s, RSS {r['scan_rss'] >> 20} MiB)"
                      f"  containerize {r['pack']:6.1f}s (RSS {r['pack_rss'] >> 20} MiB)"
                      f"  unchanged rescan {r['rescan']:6.1f}s (RSS {r['rescan_rss'] >> 20} MiB)"
                      f"  store {r['store_bytes'] / n:,.0f} B/file")
            s, p = results[n]["sqlite"], results[n]["postgres"]
            print(f"  PostgreSQL speed / SQLite speed: scan {s['scan'] / p['scan']:.2f}x, "
                  f"containerize {s['pack'] / p['pack']:.2f}x (target >= 0.5x)")
            shutil.rmtree(tree, ignore_errors=True) if n != sizes[-1] else None
        lo, hi = sizes[0], sizes[-1]
        for store in ("sqlite", "postgres"):
            grow = (results[hi][store]["pack_rss"] - results[lo][store]["pack_rss"]) >> 20
            print(f"containerize peak RSS growth {lo:,} -> {hi:,} files on {store}: {grow} MiB (target < 60 MiB)")
        print(f"load average {os.getloadavg()[0]:.2f}")
        if not args.no_tui:
            url = f"sqlite:///{os.path.join(work, f'scale{hi}.db')}"
            lat = tui_latency(url, f"scale{hi}", env)
            print(f"TUI on the {hi:,}-file project, {len(BROWSE_KEYS)} keys:")
            print(f"  browsing:           {_lat(lat['idle'])}; longest loop stall {lat['idle_stall'] * 1000:.0f} ms")
            print(f"  while a rescan or re-pack runs ({lat['scans']} back to back): {_lat(lat['busy'])}; "
                  f"longest loop stall {lat['busy_stall'] * 1000:.0f} ms")
            print("  (target: max < 200 ms)")
            print(f"load average {os.getloadavg()[0]:.2f}")
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
