"""CPU seconds of a child process (user + sys from rusage, every thread), and ratios of two commands on the same
input, alternating runs, medians. On a machine shared with other work, wall time swings; CPU seconds far less."""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys


def child_cpu(argv: list[str], env: dict | None = None) -> float:
    """Run argv to completion (stdout discarded) and return its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def ptolemy(*args: str) -> list[str]:
    return [sys.executable, "-m", "ptolemy_tui", *args]


def openssl_sha256(path: str) -> list[str]:
    if not shutil.which("openssl"):
        raise SystemExit("openssl not found: it is the baseline of this ratio")
    return ["openssl", "dgst", "-sha256", path]


def compare(label: str, ours: list[str], baseline: list[str], repeat: int, env: dict | None = None) -> dict:
    """Alternate baseline and ours `repeat` times; medians of their CPU seconds and the ratio."""
    base_runs, our_runs = [], []
    for _ in range(repeat):
        base_runs.append(child_cpu(baseline))
        our_runs.append(child_cpu(ours, env))
    base, our = median(base_runs), median(our_runs)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{label}: {our:.2f} CPU-s vs openssl dgst -sha256 {base:.2f} CPU-s -> {our / base:.2f}x "
          f"(medians of {repeat} alternating runs; ours {', '.join(f'{x:.2f}' for x in our_runs)}; openssl "
          f"{', '.join(f'{x:.2f}' for x in base_runs)}; load average {load})", flush=True)
    return {"ours": our, "baseline": base, "ratio": our / base}
