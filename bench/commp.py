#!/usr/bin/env python3
"""CommP throughput: Ptolemy's engines against the Node reference (../shared/oracle), on the same file, in one run.

    .venv/bin/python bench/commp.py [--size 1GiB] [--oracle DIR] [--python-slice 32MiB] [--repeat 2] [--file PATH]

Creates SIZE random bytes in /tmp (deleted afterwards; --file uses an existing file instead), reads it once into
the page cache, then times:
  - the C engine on 1 thread and on 2 threads (ptolemy_tui.core.commp.commp_of_file),
  - the portable C engine and the pure-Python engine on the first --python-slice bytes (MB/s scale),
  - `node commp.mjs FILE --engine fr32` (the Rust/WASM package) and `--engine hashtree` (native SHA-NI) when
    node and the oracle's node_modules are present (DIR: --oracle, else /tmp/oracle-commp, else
    ../shared/oracle next to the repository). Node's figure is its own timing of the hash (`--verbose`
    seconds), which like ours includes reading the file.
Each timing is the best of --repeat runs. MB = 10^6 bytes. Ratios are to the WASM reference (fr32). The C
results are checked against the oracle's piece CID, and the slice engines against the C engine on the slice.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from ptolemy_tui.core import commp  # noqa: E402
from ptolemy_tui.core.sizes import parse_size  # noqa: E402


def find_oracle(explicit: str | None) -> str | None:
    candidates = [explicit] if explicit else [
        "/tmp/oracle-commp", os.path.join(os.path.dirname(HERE), "..", "shared", "oracle")]
    for cand in candidates:
        if cand and os.path.exists(os.path.join(cand, "commp.mjs")) and os.path.isdir(os.path.join(cand, "node_modules")):
            return os.path.abspath(cand)
    return None


def best_of(repeat: int, fn):
    best, result = None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, result


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--file", default=None, help="use this file instead of creating one")
    ap.add_argument("--oracle", default=None, help="a copy of ../shared/oracle with node_modules installed")
    ap.add_argument("--python-slice", default="32MiB", help="bytes given to the Python and portable-C engines")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-node", action="store_true")
    args = ap.parse_args()

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
    rows: list[tuple[str, float, int, str]] = []  # (label, seconds, bytes, note)
    try:
        warm(path)
        print(f"engine (auto): {commp.engine_name()}; cpu cores: {os.cpu_count()}", file=sys.stderr)
        reference = None
        for threads in (1, 2):
            secs, res = best_of(args.repeat, lambda: commp.commp_of_file(path, threads=threads, engine="c"))
            reference = reference or res
            assert res == reference, "C engine: 1 and 2 threads disagree"
            rows.append((f"C ({commp.engine_name('c')}), {threads} thread{'s' if threads > 1 else ''}", secs, size,
                         res.piece_cid_v1))
            print(f"  {rows[-1][0]}: {size / secs / 1e6:.0f} MB/s", file=sys.stderr)

        slice_size = min(size, parse_size(args.python_slice))
        with open(path, "rb") as f:
            head = f.read(slice_size)
        want = commp.CommP(engine="c")
        want.update(head)
        want = want.digest()
        for engine in ("c-portable", "python"):
            def run(engine=engine):
                h = commp.CommP(engine=engine)
                h.update(head)
                return h.digest()
            secs, res = best_of(1 if engine == "python" else args.repeat, run)
            assert res == want, f"{engine} disagrees with the C engine on the slice"
            rows.append((f"{engine}, 1 thread (first {slice_size >> 20} MiB)", secs, slice_size, res.piece_cid_v1))
            print(f"  {rows[-1][0]}: {slice_size / secs / 1e6:.1f} MB/s", file=sys.stderr)

        oracle = None if args.no_node or not shutil.which("node") else find_oracle(args.oracle)
        if oracle is None:
            print("node or the oracle's node_modules not found: no reference rows", file=sys.stderr)
        else:
            for engine in ("fr32", "hashtree"):
                best = None
                for _ in range(1 if engine == "fr32" else args.repeat):
                    out = subprocess.run(["node", os.path.join(oracle, "commp.mjs"), path, "--engine", engine,
                                          "--verbose"], check=True, capture_output=True, text=True).stdout
                    doc = json.loads(out)
                    best = doc["seconds"] if best is None else min(best, doc["seconds"])
                    if doc["commp"] != reference.piece_cid_v1:
                        raise SystemExit(f"oracle {engine} gives {doc['commp']}, Ptolemy {reference.piece_cid_v1}")
                label = "node oracle fr32 (Rust/WASM)" if engine == "fr32" else "node oracle hashtree (native SHA-NI)"
                rows.append((label, best, size, doc["commp"]))
                print(f"  {label}: {size / best / 1e6:.0f} MB/s", file=sys.stderr)
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)

    wasm = next((r for r in rows if "fr32" in r[0]), None)
    wasm_rate = wasm[2] / wasm[1] if wasm else None
    print(f"\nCommP of {size} random bytes ({size / (1 << 30):.2f} GiB), best of {args.repeat}; "
          f"MB = 10^6 bytes; piece CID {rows[0][3]}\n")
    print("| engine | bytes | seconds | MB/s | × WASM reference |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, secs, nbytes, _ in rows:
        rate = nbytes / secs
        ratio = f"{rate / wasm_rate:.2f}×" if wasm_rate else "n/a"
        print(f"| {label} | {nbytes} | {secs:.2f} | {rate / 1e6:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
