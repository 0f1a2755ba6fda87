"""Where the reference tools are, and how to run them: go-car's `car`, `stream-commp` and kubo's `ipfs`.

scripts/install-peers builds them into $PTOLEMY_PEERS_BIN (default ${XDG_CACHE_HOME:-~/.cache}/ptolemy-peers/bin).
Without them the tier is skipped with the reason; under CI=true (where .ci/run installs them first) it fails.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

TOOLS = ("car", "stream-commp", "ipfs")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def bin_dir() -> Path:
    env = os.environ.get("PTOLEMY_PEERS_BIN")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "ptolemy-peers" / "bin"


def missing() -> list[str]:
    return [t for t in TOOLS if not os.access(bin_dir() / t, os.X_OK)]


def require() -> Path:
    """The tools' directory, or a skip (a failure under CI=true) naming what is missing and the fix."""
    absent = missing()
    if absent:
        reason = (f"reference tools missing from {bin_dir()}: {', '.join(absent)} "
                  f"(run scripts/install-peers, or set PTOLEMY_PEERS_BIN)")
        if IN_CI:
            pytest.fail(f"{reason}; a skipped peers test fails CI", pytrace=False)
        pytest.skip(reason)
    return bin_dir()


def run(args: list, *, env: dict | None = None, cwd=None, stdin=None, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, env=env, cwd=cwd, stdin=stdin,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{args[0]} {' '.join(map(str, args[1:4]))} … exited {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc


def stream_commp(bins: Path, car: Path) -> dict:
    """stream-commp's four stderr lines, parsed."""
    with open(car, "rb") as fh:
        err = run([bins / "stream-commp"], stdin=fh).stderr.decode()
    m = re.search(r"CommPCid: (\S+)\nPayload: +(\d+) bytes\nUnpadded piece: +(\d+) bytes\nPadded piece: +(\d+) bytes",
                  err)
    assert m, err
    return {"commp": m[1], "payload_size": int(m[2]), "unpadded_piece_size": int(m[3]),
            "padded_piece_size": int(m[4])}


class Kubo:
    """`ipfs` offline in a throwaway IPFS_PATH (no daemon, no network)."""

    def __init__(self, bins: Path, repo: Path):
        self.exe = bins / "ipfs"
        self.env = dict(os.environ, IPFS_PATH=str(repo))
        self.env.pop("IPFS_GATEWAY", None)
        run([self.exe, "init", "--empty-repo", "--profile", "test"], env=self.env)

    def __call__(self, *args, timeout: float = 300) -> bytes:
        return run([self.exe, *args], env=self.env, timeout=timeout).stdout

    def add_only_hash(self, path) -> str:
        return self("add", "-r", "--cid-version", "1", "--raw-leaves", "--only-hash", "--offline", "--hidden",
                    "-Q", path).decode().strip()
