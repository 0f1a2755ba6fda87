#!/usr/bin/env python3
"""Head to head with the reference tools on one tree, in one run: wall and CPU seconds, MB/s, ratios.

    scripts/install-peers && .venv/bin/python bench/peers.py [--size 512MiB] [--car-size 128MiB]
                                                             [--staging-dir /dev/shm] [--keep]

The tree is bench/build.py's mixed tree (large sharded files, 1–16 MiB files, 4–128 KiB files). Measured:
  1. the predecessor's pipeline for every container — copy its items (shards as byte ranges) into a staging
     directory, go-car `car create --version 1`, `stream-commp < CAR` — against `ptolemy build` of the same
     containers (one worker, serial: the predecessor also built one container at a time), and two blitz workers;
  2. `ptolemy commp CAR` against `stream-commp < CAR` on the CARs the build wrote;
  3. `ipfs add -r --cid-version 1 --raw-leaves --only-hash --offline --hidden` against
     `ptolemy car create --cid-only` (kubo profile) of the whole tree: the root CID without writing a CAR.
CPU = user + system seconds of every process involved (children reaped, plus this process for the copies).
MB = 10^6 bytes of source data. Singularity is not a column: see SINGULARITY below.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchkit import compile_package  # noqa: E402  (bench/ is the script's own directory)
MB = 1e6

# What stopped a fourth column (tried on 2026-12-02 with the module proxy this project reaches):
SINGULARITY = ("`go install github.com/data-preservation-programs/singularity@latest` fails at once: the module "
               "proxy answers 403 'This module version is not available' for its version list, and for the exact "
               "tags v1.0.0-RC1 and v0.7.0-RC1 too; its go.mod also replaces lassie and rclone with forks, which "
               "`go install MODULE@VERSION` refuses even where the module is served.")


def _bench_build():
    spec = importlib.util.spec_from_file_location("bench_build", os.path.join(HERE, "build.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def peers_bin() -> str:
    env = os.environ.get("PTOLEMY_PEERS_BIN")
    if env:
        return env
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "ptolemy-peers", "bin")


class Clock:
    """Wall seconds and the CPU seconds of this process plus its reaped children, over a with-block."""

    def __enter__(self):
        self.w0 = time.monotonic()
        self.c0 = self._cpu()
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self.w0
        self.cpu = self._cpu() - self.c0

    @staticmethod
    def _cpu() -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(args, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args],
                          capture_output=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {proc.stderr.decode(errors='replace')[-500:]}")
    return proc


def copy_range(src: bytes, dst: bytes, offset: int, length: int) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fin.seek(offset)
        left = length
        while left:
            n = os.sendfile(fout.fileno(), fin.fileno(), None, min(left, 1 << 30))
            if n == 0:
                raise SystemExit(f"{src!r} shrank while copying")
            left -= n


def predecessor(project, bins: str, scratch: str) -> dict:
    """Per container: copy its items into staging, `car create --version 1`, `stream-commp < CAR`."""
    from ptolemy_tui.store.models import Car, Container, ContainerItem, File

    root = os.fsencode(project.target_dir)
    totals = {"copy": [0.0, 0.0], "car": [0.0, 0.0], "commp": [0.0, 0.0]}
    data = same_root = same_piece = n = 0
    for box in Container.select().where(Container.project == project.id).order_by(Container.seq):
        stage = os.path.join(os.fsencode(scratch), b"stage-%d" % box.seq)
        items = (ContainerItem.select(ContainerItem, File).join(File)
                 .where(ContainerItem.container == box.id).order_by(ContainerItem.seq))
        with Clock() as c:
            for it in items:
                car_path = it.car_path if isinstance(it.car_path, bytes) else os.fsencode(it.car_path)
                copy_range(os.path.join(root, os.fsencode(it.file.path)), os.path.join(stage, car_path),
                           it.offset, it.length)
        totals["copy"][0] += c.wall
        totals["copy"][1] += c.cpu
        out = os.path.join(scratch, f"predecessor-{box.seq}.car")
        with Clock() as c:
            run([os.path.join(bins, "car"), "create", "--version", "1", "--no-wrap", "-f", out, stage])
        totals["car"][0] += c.wall
        totals["car"][1] += c.cpu
        with Clock() as c, open(out, "rb") as fh:
            err = run([os.path.join(bins, "stream-commp")], stdin=fh).stderr.decode()
        totals["commp"][0] += c.wall
        totals["commp"][1] += c.cpu
        piece = err.split("CommPCid: ")[1].split()[0]
        root_cid = run([os.path.join(bins, "car"), "root", out]).stdout.decode().split()[0]
        ours = Car.get(Car.container == box.id)
        same_root += root_cid == ours.payload_cid
        same_piece += piece == ours.piece_cid
        data += box.data_bytes
        n += 1
        shutil.rmtree(stage)
        os.unlink(out)
    return {"parts": totals, "data": data, "containers": n, "same_root": same_root, "same_piece": same_piece}


def commp_head_to_head(car_paths: list[str], bins: str) -> dict:
    size = sum(os.path.getsize(p) for p in car_paths)
    with Clock() as theirs:
        for p in car_paths:
            with open(p, "rb") as fh:
                run([os.path.join(bins, "stream-commp")], stdin=fh)
    with Clock() as ours:
        for p in car_paths:
            run([sys.executable, "-m", "ptolemy_tui", "commp", p, "--json"])
    return {"bytes": size, "theirs": theirs, "ours": ours}


def cid_only_head_to_head(tree: str, bins: str, scratch: str, data: int) -> dict:
    env = dict(os.environ, IPFS_PATH=os.path.join(scratch, "ipfs-repo"))
    run([os.path.join(bins, "ipfs"), "init", "--empty-repo", "--profile", "test"], env=env)
    with Clock() as theirs:
        root_theirs = run([os.path.join(bins, "ipfs"), "add", "-r", "--cid-version", "1", "--raw-leaves",
                           "--only-hash", "--offline", "--hidden", "-Q", tree], env=env).stdout.decode().strip()
    with Clock() as ours:
        doc = json.loads(run([sys.executable, "-m", "ptolemy_tui", "car", "create", tree, "--cid-only",
                              "--json"]).stdout)
    assert doc["root_cid"] == root_theirs, (doc["root_cid"], root_theirs)
    return {"data": data, "theirs": theirs, "ours": ours, "root": root_theirs}


def row(name: str, wall: float, cpu: float, data: float, base_wall: float | None = None) -> str:
    ratio = f"{base_wall / wall:.2f}×" if base_wall else "1.00×"
    return f"| {name} | {wall:.2f} | {cpu:.2f} | {data / MB / wall:,.0f} | {ratio} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="512MiB")
    ap.add_argument("--car-size", default="128MiB")
    ap.add_argument("--staging-dir", default=None,
                    help="where CARs and the predecessor's staging copies go (default: the work dir in /tmp)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    compile_package()
    bins = peers_bin()
    missing = [t for t in ("car", "stream-commp", "ipfs") if not os.access(os.path.join(bins, t), os.X_OK)]
    if missing:
        print(f"bench/peers.py: {', '.join(missing)} missing from {bins}; run scripts/install-peers", file=sys.stderr)
        return 2
    bb = _bench_build()
    size, car_size = bb.parse_size(args.size), bb.parse_size(args.car_size)
    tmp = tempfile.mkdtemp(prefix="ptolemy-bench-peers-", dir="/tmp")
    os.environ["XDG_STATE_HOME"] = os.path.join(tmp, "state")
    os.environ["XDG_DATA_HOME"] = os.path.join(tmp, "data")
    scratch = tempfile.mkdtemp(prefix="ptolemy-bench-peers-", dir=args.staging_dir) if args.staging_dir else tmp
    from ptolemy_tui.core.commp import engine_name
    from ptolemy_tui.store import db
    from ptolemy_tui.store.models import Car

    db.open_database(f"sqlite:///{tmp}/bench.db")
    src = os.path.join(tmp, "src")
    try:
        files, total = bb.make_tree(src, size)
        os.sync()
        bb.warm(src)
        print(f"tree: {files:,} files, {total / MB:,.0f} MB; CAR size {car_size / MB:,.0f} MB; CommP engine "
              f"{engine_name()}; {os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}")

        serial = bb.setup_project("serial", src, os.path.join(scratch, "staging"), f"{car_size}B", 1)
        r1 = bb.run_build(serial, "serial", 1)
        assert r1["states"] == {"built"}, r1
        cars = [c.path for c in Car.select().where(Car.project == serial.id)]
        pred = predecessor(serial, bins, scratch)
        commp = commp_head_to_head(cars, bins)
        bb.clear_staging(os.path.join(scratch, "staging"), "serial")
        blitz = bb.setup_project("blitz", src, os.path.join(scratch, "staging"), f"{car_size}B", 2)
        r2 = bb.run_build(blitz, "blitz", 2)
        assert r2["states"] == {"built"}, r2
        bb.clear_staging(os.path.join(scratch, "staging"), "blitz")
        cid = cid_only_head_to_head(src, bins, scratch, total)

        parts = pred["parts"]
        p_wall = sum(w for w, _ in parts.values())
        p_cpu = sum(c for _, c in parts.values())
        print(f"\n{pred['containers']} containers, {pred['data'] / MB:,.0f} MB of source data; "
              f"go-car root = Ptolemy payload CID for {pred['same_root']}/{pred['containers']}, "
              f"stream-commp = Ptolemy piece CID for {pred['same_piece']}/{pred['containers']}")
        print("\n| build of the same containers | wall s | CPU s | MB/s | × predecessor |")
        print("| --- | ---: | ---: | ---: | ---: |")
        print(row("predecessor: copy + `car create` + `stream-commp`", p_wall, p_cpu, pred["data"]))
        for k, label in (("copy", "  of which copy into staging"), ("car", "  of which `car create`"),
                         ("commp", "  of which `stream-commp`")):
            print(f"| {label} | {parts[k][0]:.2f} | {parts[k][1]:.2f} | | |")
        print(row("`ptolemy build`, 1 worker (serial)", r1["wall"], r1["cpu"], r1["data"], p_wall))
        print(row("`ptolemy build`, 2 workers (blitz)", r2["wall"], r2["cpu"], r2["data"], p_wall))
        print("\n| CommP of the built CARs | wall s | CPU s | MB/s of CAR | × stream-commp |")
        print("| --- | ---: | ---: | ---: | ---: |")
        print(row("`stream-commp < CAR`", commp["theirs"].wall, commp["theirs"].cpu, commp["bytes"]))
        print(row("`ptolemy commp CAR`", commp["ours"].wall, commp["ours"].cpu, commp["bytes"], commp["theirs"].wall))
        print("\n| root CID of the tree, no CAR written | wall s | CPU s | MB/s | × ipfs |")
        print("| --- | ---: | ---: | ---: | ---: |")
        print(row("`ipfs add -r --only-hash …`", cid["theirs"].wall, cid["theirs"].cpu, cid["data"]))
        print(row("`ptolemy car create --cid-only`", cid["ours"].wall, cid["ours"].cpu, cid["data"],
                  cid["theirs"].wall))
        print(f"\nsame root CID: {cid['root']}")
        print(f"\nSingularity: {SINGULARITY}")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        db.close_database()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
            if scratch != tmp:
                shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
