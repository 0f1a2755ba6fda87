"""Which C CommP kernel path is fastest on this machine: measured once, then cached per machine and build.

Feature flags do not say which path wins: on a Xeon the AVX-512 path was 1.9x SHA-NI, on this EPYC (Zen 4)
the two are within 30 % of each other and the 4-way SHA-NI kernel beats the 2-way one. So ``auto`` times
every path the kernel runs here on the same 0.5 MB subtree (interleaved rounds, the best CPU time of each,
about 15 ms in all) and keeps the answer in ``$XDG_CACHE_HOME/ptolemy/commp-engine.json``, keyed by the CPU
(model and flags) and the kernel build (a digest of the compiled module), so a new CPU, a VM moved to other
hardware or a rebuilt kernel measures again and everything else reads one small file.

    choice = chosen(kernel)        # Choice(engine="c-avx512", reason="calibrated ...: c-avx512 1003 MB ...")

A cache that cannot be read or written is not an error: the figures are measured again, and the reason says
the answer was not cached.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

from ptolemy_tui.paths import cache_dir

CACHE_NAME = "commp-engine.json"
CACHE_VERSION = 1
ROUNDS = 5
SAMPLE_LOG2 = 12         # 2**12 quads = 520,192 payload bytes per timed root (about 0.5 ms at 1 GB/s)
SLOW_SAMPLE_LOG2 = 9     # the portable path is ten times slower: a smaller sample keeps calibration short
KEEP_MACHINES = 8        # entries kept in the cache file (a home directory shared by several machines)


@dataclass(frozen=True)
class Choice:
    engine: str                  # e.g. "c-avx512"
    reason: str                  # one line: the figures behind it, or what forced it
    figures: dict = field(default_factory=dict)  # engine -> MB of payload per CPU-second (calibrated only)


def machine_key(kernel) -> str:
    """A digest of what the answer depends on: the CPU's model and flags, the kernel build, its paths."""
    h = hashlib.sha256()
    h.update(_cpu_identity().encode())
    h.update(repr(tuple(kernel.impls())).encode())
    path = getattr(kernel, "__file__", None)
    if path:
        try:
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
        except OSError:
            h.update(path.encode())
    return h.hexdigest()[:32]


def _cpu_identity() -> str:
    """'model name' and 'flags' of the first CPU in /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            wanted = {}
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip()
                if name in ("model name", "flags", "vendor_id", "cpu family", "model") and name not in wanted:
                    wanted[name] = value.strip()
                if not line.strip() and wanted:
                    break
        if wanted:
            return json.dumps(wanted, sort_keys=True)
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def measure(kernel, rounds: int = ROUNDS) -> dict[str, float]:
    """MB of payload per CPU-second of each C path here, the best of `rounds` interleaved timings."""
    impls = list(kernel.impls())
    samples = {k: os.urandom(127 << k) for k in {SAMPLE_LOG2, SLOW_SAMPLE_LOG2}}
    best = {impl: float("inf") for impl in impls}
    for impl in impls:  # warm-up: page in the code and the sample
        kernel.root(samples[SLOW_SAMPLE_LOG2], SLOW_SAMPLE_LOG2, impl=impl)
    for _ in range(rounds):
        for impl in impls:
            k = SLOW_SAMPLE_LOG2 if impl == "portable" else SAMPLE_LOG2
            data = samples[k]
            t0 = time.thread_time_ns()
            kernel.root(data, k, impl=impl)
            dt = time.thread_time_ns() - t0
            best[impl] = min(best[impl], max(dt, 1) / len(data))  # ns per byte
    return {f"c-{impl}": round(1e3 / ns_per_byte, 1) for impl, ns_per_byte in best.items()}


def _fastest(figures: dict[str, float]) -> str:
    return max(figures, key=lambda engine: figures[engine])


def describe(figures: dict[str, float], when: str, where: str) -> str:
    ranked = sorted(figures.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{engine} {rate:.0f}" for engine, rate in ranked)
    return f"calibrated {when}: {text} MB per CPU-second; {where}"


def cache_path() -> str:
    return os.path.join(cache_dir(), CACHE_NAME)


def _load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        if isinstance(doc, dict) and doc.get("version") == CACHE_VERSION and isinstance(doc.get("machines"), dict):
            return doc
    except (OSError, ValueError):
        pass
    return {"version": CACHE_VERSION, "machines": {}}


def _save(path: str, doc: dict) -> bool:
    """Write atomically (a half-written cache would only cost a calibration, but two workers start at once)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".commp-engine.", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return True
    except OSError:
        return False


def calibrate(kernel, path: str | None = None,
              measure_fn: Callable[[object], dict[str, float]] = measure) -> Choice:
    """The cached choice for this machine and kernel build, or a fresh measurement (then cached)."""
    path = path or cache_path()
    key = machine_key(kernel)
    doc = _load(path)
    entry = doc["machines"].get(key)
    if isinstance(entry, dict) and isinstance(entry.get("figures"), dict) and entry["figures"]:
        figures = {str(k): float(v) for k, v in entry["figures"].items()}
        if set(figures) == {f"c-{impl}" for impl in kernel.impls()}:
            return Choice(_fastest(figures), describe(figures, str(entry.get("measured", "?")), f"cached in {path}"),
                          figures)
    figures = measure_fn(kernel)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    doc["machines"][key] = {"figures": figures, "measured": when, "cpu": _cpu_identity()[:200]}
    machines = doc["machines"]
    while len(machines) > KEEP_MACHINES:  # oldest first
        oldest = min(machines, key=lambda k: str(machines[k].get("measured", "")))
        del machines[oldest]
    where = f"cached in {path}" if _save(path, doc) else f"not cached ({path} is not writable)"
    return Choice(_fastest(figures), describe(figures, when, where), figures)


_CHOSEN: dict[str, Choice] = {}


def chosen(kernel) -> Choice:
    """calibrate() once per process (then free)."""
    path = cache_path()
    choice = _CHOSEN.get(path)
    if choice is None:
        choice = _CHOSEN[path] = calibrate(kernel, path)
    return choice
