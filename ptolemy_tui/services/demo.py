"""`ptolemy demo`: a small sample tree and a project on it with small CAR and shard sizes, so a newcomer sees a
scan, packing and a live build within a minute. No UI here: the CLI opens the TUI on the project."""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

from ptolemy_tui.core.sizes import KiB, MiB
from ptolemy_tui.services import projects

DEMO_CAR_SIZE = "4000KiB"  # 98 % of a 4 MiB piece
DEMO_SHARD_SIZE = "1MiB"
BIG_FILE_SIZE = 12 * MiB + 300 * KiB  # lands in thirteen shards
DIRECTORIES = ("docs", "docs/drafts", "images/2023", "images/2024", "logs", "datasets/raw", "datasets/clean", "video")


def make_tree(root: str | os.PathLike, *, files: int = 300, seed: int = 7) -> dict[str, int]:
    """Write the sample tree under root (deterministic for a seed). Returns {"files": n, "bytes": total}."""
    rng = random.Random(seed)
    root = Path(root)
    for d in DIRECTORIES:
        (root / d).mkdir(parents=True, exist_ok=True)
    total = 0
    extensions = {"docs": ".txt", "docs/drafts": ".md", "images/2023": ".jpg", "images/2024": ".png",
                  "logs": ".log", "datasets/raw": ".csv", "datasets/clean": ".parquet", "video": ".txt"}
    for n in range(files):
        d = DIRECTORIES[n % (len(DIRECTORIES) - 1)]
        size = int(rng.lognormvariate(9.0, 1.1)) % (96 * KiB) + 1
        path = root / d / f"file-{n:04d}{extensions[d]}"
        path.write_bytes(rng.randbytes(size))
        total += size
    big = root / "video" / "big-recording.bin"
    chunk = rng.randbytes(64 * KiB)
    with open(big, "wb") as fh:
        written = 0
        while written < BIG_FILE_SIZE:
            part = chunk[: BIG_FILE_SIZE - written]
            fh.write(part)
            written += len(part)
    (root / "empty-dir").mkdir(exist_ok=True)
    (root / "README.txt").write_text("Ptolemy demo tree: small files, a few directories and one big file "
                                     "that is split into shards.\n")
    return {"files": files + 2, "bytes": total + BIG_FILE_SIZE + (root / "README.txt").stat().st_size}


def free_name(base: str = "demo") -> str:
    existing = {p.name for p in projects.list_projects()}
    if base not in existing:
        return base
    n = 2
    while f"{base}-{n}" in existing:
        n += 1
    return f"{base}-{n}"


def create_demo(base_dir: str | None = None, *, name: str | None = None, files: int = 300, workers: int = 2):
    """The sample tree in a new temporary directory (or base_dir) and a project on it.

    Returns (project, base_dir). The directory is left in place so the CARs can be inspected afterwards.
    """
    base = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="ptolemy-demo-"))
    target, staging = base / "data", base / "staging"
    target.mkdir(parents=True, exist_ok=True)
    make_tree(target, files=files)
    spec = projects.ProjectSpec(name or free_name(), str(target), str(staging), car_size=DEMO_CAR_SIZE,
                                shard_size=DEMO_SHARD_SIZE, load_type="blitz", workers=workers)
    project, _warnings = projects.create(spec)
    return project, str(base)
