"""A real `ptolemy serve` subprocess over a store holding the same mixed tree built staged (blitz) and inline."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.cli.helpers import run_ptolemy
from tests.worker.buildkit import make_tree, wait_until  # noqa: F401  (the serve tests wait with it too)

TOKEN = "s3cret-token-for-tests-0123456789"


class ServeProc:
    """`python -m ptolemy_tui serve ...` on a free loopback port; stop() ends it and returns its stderr."""

    def __init__(self, db_url: str, *args: str, log_file: str | None = None, env: dict | None = None):
        env = dict(os.environ, PTOLEMY_DB=db_url, **(env or {}))
        cmd = [sys.executable, "-m", "ptolemy_tui"]
        if log_file:
            cmd += ["--log-file", log_file]
        cmd += ["serve", "--listen", "127.0.0.1:0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if m is None:
            self.proc.kill()
            raise AssertionError(f"serve did not start: {line!r} {self.proc.stderr.read()}")
        self.port = int(m.group(1))
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, cid: str) -> str:
        return f"{self.base}/piece/{cid}"

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return err


def cli(db_url: str, *argv: str):
    r = run_ptolemy(*argv, env={"PTOLEMY_DB": db_url})
    assert r.code == 0, (argv, r.err)
    return r


def build_pair(root: Path, db_url: str, *, names=("staged", "inline"), big: int = 3_000_000) -> Path:
    """The mixed tree (odd names, empty file, shards, a run of zeros, a symlink) built blitz and inline."""
    src = make_tree(root / "src", big=big)
    (src / "zeros.bin").write_bytes(bytes(900_000))  # equal leaves: the CAR holds the block once
    os.symlink("a.txt", src / "link")
    for name, mode in zip(names, ("blitz", "inline")):
        cli(db_url, "project", "create", name, "--target", str(src), "--staging", str(root / f"stg-{name}"),
            "--car-size", "2MiB", "--shard-size", "1MiB", "--load-type", mode, "--workers", "2")
        cli(db_url, "scan", name)
        cli(db_url, "containerize", name)
        cli(db_url, "build", name, "--wait")
    return src


