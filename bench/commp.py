#!/usr/bin/env python3
"""CommP throughput: Ptolemy's engines against the Node reference (../shared/oracle), on the same file, in one run.

    .venv/bin/python bench/commp.py [--size 1GiB] [--oracle DIR] [--python-slice 32MiB] [--repeat 2] [--file PATH]
                                    [--ratio-only]

Creates SIZE random bytes in /tmp (deleted afterwards; --file uses an existing file instead), reads it once into
the page cache, then prints the ratio the speed target is stated in, CPU seconds (rusage of the child) of
`ptolemy commp --threads 1 FILE` over `openssl dgst -sha256 FILE`, and each C engine's MB per CPU-second as the
CLI runs it (alternating runs, medians; --ratio-only stops there), then times:
  - the C engine's fastest path (c-avx512 here) on 1 thread and on 2 threads, and its SHA-NI path on 1 thread
    (ptolemy_tui.core.commp.commp_of_file, the whole file),
  - the portable C engine and the pure-Python engine on the first --python-slice bytes (MB/s scale),
  - `node commp.mjs FILE --engine fr32` (the Rust/WASM package) and `--engine hashtree` (native SHA-NI) when
    node and the oracle's node_modules are present (DIR: --oracle, else /tmp/oracle-commp, else
    ../shared/oracle next to the repository). Node's figure is its own timing of the hash (`--verbose`
    seconds), which like ours includes reading the file.
Each timing is the best of --repeat runs (the WASM run, ~36 s, once). MB = 10^6 bytes. Ratios are to the WASM
reference (fr32). CPU seconds (all threads; node's as a child process, startup included) are printed too: on a
busy shared machine MB per CPU-second moves less than wall-clock MB/s. The C
results are checked against the oracle's piece CID, and the slice engines against the C engine on the slice.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from ptolemy_tui.core import commp  # noqa: E402
from ptolemy_tui.core.sizes import parse_size  # noqa: E402
from benchkit import compile_package  # noqa: E402


def find_oracle(explicit: str | None) -> str | None:
    candidates = [explicit] if explicit else [
        "/tmp/oracle-commp", os.path.join(os.path.dirname(HERE), "..", "shared", "oracle")]
    for cand in candidates:
        if cand and os.path.exists(os.path.join(cand, "commp.mjs")) and os.path.isdir(os.path.join(cand, "node_modules")):
            return os.path.abspath(cand)
    return None


def best_of(repeat: int, fn):
    """(best wall seconds, CPU seconds of that run, result)."""
    best, cpu, result = None, None, None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if best is None or dt < best:
            best, cpu = dt, dc
    return best, cpu, result


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def make_file(path: str, size: int) -> None:
    block = 8 << 20
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(block, left)
            f.write(os.urandom(n))
            left -= n


def warm(path: str) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(16 << 20):
            pass


def cli_ratio(path: str, size: int, repeat: int) -> None:
    """`ptolemy commp --threads 1` CPU / `openssl dgst -sha256` CPU (target <= 1.3), then every C engine's MB per
    CPU-second as the CLI runs it (process start-up included), alternating, medians."""
    from cpu_ratio import child_cpu, compare, median, openssl_sha256, ptolemy

    repeat = max(3, repeat)
    compare(f"ptolemy commp --threads 1 ({commp.engine_name()})", ptolemy("commp", "--threads", "1", path),
            openssl_sha256(path), repeat)
    engines = [e for e in commp.available_engines() if e not in ("c-portable", "python")]
    runs: dict[str, list[float]] = {e: [] for e in engines}
    for _ in range(repeat):
        for engine in engines:
            runs[engine].append(child_cpu(ptolemy("commp", "--threads", "1", "--engine", engine, path)))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"per engine, `ptolemy commp --threads 1 --engine E` of {size / 1e6:.0f} MB (medians of {repeat}; "
          f"load average {load}):")
    for engine in sorted(engines, key=lambda e: median(runs[e])):
        cpu = median(runs[engine])
        print(f"  {engine:12} {cpu:6.2f} CPU-s  {size / cpu / 1e6:7.1f} MB per CPU-second", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--file", default=None, help="use this file instead of creating one")
    ap.add_argument("--oracle", default=None, help="a copy of ../shared/oracle with node_modules installed")
    ap.add_argument("--python-slice", default="32MiB", help="bytes given to the Python and portable-C engines")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-node", action="store_true")
    ap.add_argument("--ratio-only", action="store_true",
                    help="only the CPU ratio to openssl and each engine's MB per CPU-second (CLI subprocesses)")
    args = ap.parse_args()
    compile_package()

    tmpdir = None
    if args.file:
        path = args.file
        size = os.path.getsize(path)
    else:
        size = parse_size(args.size)
        tmpdir = tempfile.mkdtemp(prefix="ptolemy-bench-commp-", dir="/tmp")
        path = os.path.join(tmpdir, "payload.bin")
        print(f"creating {size} random bytes in {path} ...", file=sys.stderr)
        make_file(path, size)
    rows: list[tuple[str, float, float, int, str]] = []  # (label, wall s, CPU s, bytes, piece CID)
    try:
        warm(path)
        print(f"engine (auto): {commp.engine_name()} ({commp.engine_reason()}); cpu cores: {os.cpu_count()}")
        cli_ratio(path, size, args.repeat)
        if args.ratio_only:
            return 0
        reference = None
        best_c = commp.engine_name("c")
        runs = [(best_c, 1), (best_c, 2)] + [(e, 1) for e in commp.available_engines()
                                               if e not in (best_c, "c-portable", "python")]
        for engine, threads in runs:
            secs, cpu, res = best_of(args.repeat, lambda: commp.commp_of_file(path, threads=threads, engine=engine))
            reference = reference or res
            assert res == reference, f"{engine} with {threads} thread(s) disagrees"
            rows.append((f"{engine}, {threads} thread{'s' if threads > 1 else ''}", secs, cpu, size,
                         res.piece_cid_v1))
            print(f"  {rows[-1][0]}: {size / secs / 1e6:.0f} MB/s", file=sys.stderr)

        slice_size = min(size, parse_size(args.python_slice))
        with open(path, "rb") as f:
            head = f.read(slice_size)
        want = commp.CommP(engine=best_c)
        want.update(head)
        want = want.digest()
        for engine in ("c-portable", "python"):
            def run(engine=engine):
                h = commp.CommP(engine=engine)
                h.update(head)
                return h.digest()
            secs, cpu, res = best_of(1 if engine == "python" else args.repeat, run)
            assert res == want, f"{engine} disagrees with the C engine on the slice"
            rows.append((f"{engine}, 1 thread (first {slice_size >> 20} MiB)", secs, cpu, slice_size,
                         res.piece_cid_v1))
            print(f"  {rows[-1][0]}: {slice_size / secs / 1e6:.1f} MB/s", file=sys.stderr)

        oracle = None if args.no_node or not shutil.which("node") else find_oracle(args.oracle)
        if oracle is None:
            print("node or the oracle's node_modules not found: no reference rows", file=sys.stderr)
        else:
            for engine in ("fr32", "hashtree"):
                best = cpu = None
                for _ in range(1 if engine == "fr32" else args.repeat):
                    c0 = children_cpu()
                    out = subprocess.run(["node", os.path.join(oracle, "commp.mjs"), path, "--engine", engine,
                                          "--verbose"], check=True, capture_output=True, text=True).stdout
                    doc = json.loads(out)
                    if best is None or doc["seconds"] < best:
                        best, cpu = doc["seconds"], children_cpu() - c0
                    if doc["commp"] != reference.piece_cid_v1:
                        raise SystemExit(f"oracle {engine} gives {doc['commp']}, Ptolemy {reference.piece_cid_v1}")
                label = "node oracle fr32 (Rust/WASM)" if engine == "fr32" else "node oracle hashtree (native SHA-NI)"
                rows.append((label, best, cpu, size, doc["commp"]))
                print(f"  {label}: {size / best / 1e6:.0f} MB/s", file=sys.stderr)
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)

    wasm = next((r for r in rows if "fr32" in r[0]), None)
    wasm_rate = wasm[3] / wasm[1] if wasm else None
    load = os.getloadavg()[0]
    print(f"\nCommP of {size} random bytes ({size / (1 << 30):.2f} GiB), best of {args.repeat}; MB = 10^6 bytes; "
          f"{os.cpu_count()} cores, load average {load:.2f} at the end; piece CID {rows[0][4]}\n")
    print("| engine | bytes | wall s | MB/s | × WASM reference | CPU s | MB per CPU-second |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, secs, cpu, nbytes, _ in rows:
        rate = nbytes / secs
        ratio = f"{rate / wasm_rate:.2f}×" if wasm_rate else "n/a"
        print(f"| {label} | {nbytes} | {secs:.2f} | {rate / 1e6:.1f} | {ratio} | {cpu:.2f} | "
              f"{nbytes / max(cpu, 1e-9) / 1e6:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
