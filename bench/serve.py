"""MB/s of `ptolemy serve` over loopback: one client and 8 concurrent clients downloading a staged CAR and an
inline CAR (regenerated from its plan and sources, every leaf re-hashed), beside `curl file://` of the staged CAR
from disk in the same run (the baseline), and beside a bare sendfile server (the floor: loopback TCP and a second
process, which no HTTP server avoids). Every client is curl, so the ratios compare servers, not clients.

    .venv/bin/python bench/serve.py [--size 512MiB] [--repeat 3] [--dir /dev/shm] [--no-verify]

Targets (issue 13): staged ≥ 0.9× the file baseline, inline ≥ 0.5× on one client. Figures are MB/s (10^6 B/s),
medians of --repeat interleaved rounds; the load average is printed with them (a shared machine moves every figure).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

from benchkit import compile_package, parse_size

MB = 1e6


def ptolemy(db: str, *argv: str, env=None) -> str:
    full = dict(os.environ, PTOLEMY_DB=db, **(env or {}))
    r = subprocess.run([sys.executable, "-m", "ptolemy_tui", *argv], capture_output=True, text=True, env=full)
    if r.returncode != 0:
        raise SystemExit(f"ptolemy {' '.join(argv)} failed: {r.stderr.strip()}")
    return r.stdout


def start_server(db: str, project: str, extra: list[str], env) -> tuple[subprocess.Popen, int]:
    full = dict(os.environ, PTOLEMY_DB=db, **env)
    proc = subprocess.Popen([sys.executable, "-m", "ptolemy_tui", "serve", "--listen", "127.0.0.1:0", "--project",
                             project, *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=full)
    line = proc.stdout.readline()
    m = re.search(r":(\d+)/piece", line)
    if not m:
        proc.kill()
        raise SystemExit(f"serve did not start: {line!r}")
    return proc, int(m.group(1))


# The floor for any HTTP server on this machine: read the request head, send the header, then one os.sendfile
# of the whole file (the kernel moves every byte; no parsing, routing, ranges, logging or store). What it loses
# against `curl file://` is loopback TCP and a second process, which no server avoids.
SENDFILE_SERVER = r"""
import os, socket, sys, threading
path = sys.argv[1]
size = os.path.getsize(path)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print(listener.getsockname()[1], flush=True)

def handle(conn):
    with conn:
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(65536)
            if not data:
                return
            head += data
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
        fd = os.open(path, os.O_RDONLY)
        try:
            sent = 0
            while sent < size:
                n = os.sendfile(conn.fileno(), fd, sent, size - sent)
                if not n:
                    break
                sent += n
        finally:
            os.close(fd)

while True:
    conn, _ = listener.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
"""


def start_sendfile_server(path: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", SENDFILE_SERVER, path], stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def curl_many(urls: list[str]) -> float:
    """Seconds for every URL to be downloaded at once by its own curl (to /dev/null)."""
    start = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-sSf", "-o", "/dev/null", u]) for u in urls]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"curl failed: {codes}")
    return time.perf_counter() - start


def stalled_rss(pid: int, port: int, cid: str, clients: int) -> tuple[int, int]:
    """The server's RSS before and while `clients` connections ask for the CAR and never read."""
    import psutil
    import socket

    proc = psutil.Process(pid)
    before = proc.memory_info().rss
    socks = []
    for _ in range(clients):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET /piece/{cid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        socks.append(s)
    time.sleep(3)  # a benchmark, not a test: let every connection fill its socket buffers and stall
    during = proc.memory_info().rss
    for s in socks:
        s.close()
    return before, during


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="512MiB", help="source data (one file of random bytes), e.g. 1GiB")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the tree, store and staged CAR go (default: a temp dir)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--no-verify", action="store_true", help="serve inline CARs without re-hashing leaves")
    args = ap.parse_args()
    compile_package()
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed (apt-get install curl)")
    size = parse_size(args.size)
    work = tempfile.mkdtemp(prefix="bench-serve-", dir=args.dir)
    env = {"XDG_STATE_HOME": os.path.join(work, "state"), "XDG_DATA_HOME": os.path.join(work, "data")}
    servers = []
    try:
        src = os.path.join(work, "src")
        os.makedirs(src)
        with open(os.path.join(src, "data.bin"), "wb") as fh:
            left = size
            while left:
                n = min(left, 64 << 20)
                fh.write(os.urandom(n))
                left -= n
        db = f"sqlite:///{os.path.join(work, 'ptolemy.db')}"
        car_size = f"{(size * 1.01 + (8 << 20)) / (1 << 20):.0f}MiB"
        for name, mode in (("staged", "blitz"), ("inline", "inline")):
            ptolemy(db, "project", "create", name, "--target", src, "--staging", os.path.join(work, f"stg-{name}"),
                    "--car-size", car_size, "--shard-size", car_size, "--load-type", mode, env=env)
            ptolemy(db, "scan", name, env=env)
            ptolemy(db, "containerize", name, env=env)
            ptolemy(db, "build", name, "--wait", env=env)
        staged = json.loads(ptolemy(db, "cars", "staged", "--json", env=env))["cars"][0]
        inline = json.loads(ptolemy(db, "cars", "inline", "--json", env=env))["cars"][0]
        assert staged["piece_cid"] == inline["piece_cid"]
        nbytes = staged["car_size"]
        extra = ["--no-verify"] if args.no_verify else []
        s_proc, s_port = start_server(db, "staged", [], env)
        i_proc, i_port = start_server(db, "inline", extra, env)
        f_proc, f_port = start_sendfile_server(staged["path"])
        servers += [s_proc, i_proc, f_proc]
        cid = staged["piece_cid"]
        file_url = f"file://{staged['path']}"
        floor_url = f"http://127.0.0.1:{f_port}/"
        staged_url = f"http://127.0.0.1:{s_port}/piece/{cid}"
        inline_url = f"http://127.0.0.1:{i_port}/piece/{cid}"
        curl_many([file_url, floor_url, staged_url, inline_url])  # warm the page cache and the servers
        rows = []
        for clients in (1, args.clients):
            # interleaved: each round measures the baseline and both servers back to back, and its ratios are
            # taken within the round (a shared machine's load moves between rounds far more than within one)
            rounds = []
            cpu = {"staged": 0.0, "inline": 0.0}
            for _ in range(args.repeat):
                rates = {}
                for label, url in (("file", file_url), ("floor", floor_url), ("staged", staged_url),
                                   ("inline", inline_url)):
                    proc = psutil.Process({"staged": s_proc.pid, "inline": i_proc.pid}.get(label, os.getpid()))
                    used = sum(proc.cpu_times()[:2])
                    rates[label] = clients * nbytes / curl_many([url] * clients) / MB
                    if label in cpu:
                        cpu[label] += sum(proc.cpu_times()[:2]) - used
                rounds.append(rates)
            for label in ("floor", "staged", "inline"):
                cpu_per_gb = cpu[label] / (args.repeat * clients * nbytes / 1e9) if label in cpu else None
                rows.append((clients, label, statistics.median(r[label] for r in rounds),
                             statistics.median(r["file"] for r in rounds),
                             statistics.median(r[label] / r["file"] for r in rounds),
                             statistics.median(r[label] / r["floor"] for r in rounds), cpu_per_gb))
        rss = stalled_rss(i_proc.pid, i_port, cid, args.clients)
        load = os.getloadavg()
        print(f"CAR of {nbytes / MB:.0f} MB (one {size / (1 << 20):.0f} MiB file), medians of {args.repeat} "
              f"interleaved rounds; "
              f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs (shared machine)"
              + (" ; inline without leaf re-hashing" if args.no_verify else ""))
        print("floor: the same CAR from a bare sendfile server (no HTTP library); ratios are medians of rounds")
        print(f"{'clients':>7}  {'CAR':<7} {'MB/s':>8}  {'curl file:// MB/s':>18}  {'x file://':>9}  {'x floor':>7}"
              f"  {'server CPU s/GB':>15}")
        for clients, label, rate, base, ratio, of_floor, cpu_per_gb in rows:
            shown = f"{cpu_per_gb:>15.2f}" if cpu_per_gb is not None else f"{'-':>15}"
            print(f"{clients:>7}  {label:<7} {rate:>8.0f}  {base:>18.0f}  {ratio:>8.2f}x  {of_floor:>6.2f}x  {shown}")
        print(f"inline server RSS: {rss[0] / 2**20:.0f} MiB idle, {rss[1] / 2**20:.0f} MiB with {args.clients} "
              f"clients stalled mid-CAR (+{(rss[1] - rss[0]) / args.clients / 2**20:.1f} MiB per connection)")
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
