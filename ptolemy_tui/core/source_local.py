"""LocalSource: a directory tree on a local or NFS filesystem.

Everything the scan and build did before the seam, unchanged: the walk (local_walk: threads, in a child process
by default), symlinks recorded and never followed, sockets/FIFOs/devices skipped, unreadable entries recorded as
errors; reads are preadv on one file descriptor per item (the worker's PTOLEMY_READ_RATE cap sits above this).
"""
from __future__ import annotations

import logging
import os
import stat
import sys

from ptolemy_tui.core import local_walk
from ptolemy_tui.core.source import EntryState, SourceError, SourceMissing, text

log = logging.getLogger(__name__)

_O_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


class LocalReader:
    """preadv on one open file descriptor."""

    __slots__ = ("fd",)

    def __init__(self, path: str | bytes):
        self.fd = os.open(path, _O_FLAGS)

    def readinto_at(self, view: memoryview, pos: int) -> int:
        return os.preadv(self.fd, [view], pos)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_path(path: str | bytes) -> LocalReader:
    return LocalReader(path)


class LocalSource:
    kind = "local"

    def __init__(self, root: str | bytes):
        self.location = os.fsdecode(root)
        self.root = os.fsencode(root)

    def path(self, rel: bytes) -> bytes:
        return os.path.join(self.root, rel) if rel else self.root

    def describe(self, rel: bytes) -> str:
        return text(self.path(rel))

    def label(self, rel: bytes) -> str:
        return text(rel)

    def check(self) -> None:
        if not os.path.isdir(self.root):
            raise SourceError(f"{self.location} is not a directory any more")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise SourceError(f"{self.location} is not readable")

    def walker(self, threads: int, out, cancel, mode: str = "process"):
        """The walk runs in a child process (the second core; in one process the walk and the inserts share one
        GIL) unless `mode` is "threads", or the child cannot be started (no usable sys.executable: a frozen app's executable is
        the app itself)."""
        if mode == "process" and sys.executable and not getattr(sys, "frozen", False):
            try:
                return local_walk.ProcessWalker(self.root, threads, out, cancel)
            except OSError as exc:
                log.warning("scan: cannot start the walker process (%s); walking in threads", exc)
        return local_walk.Walker(self.root, threads, out, cancel)

    def stat(self, rel: bytes) -> EntryState:
        path = self.path(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise SourceMissing(f"no such file: {os.fsdecode(path)}") from None
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            kind, target = "symlink", os.readlink(path)
        else:
            kind = "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "special"
            target = None
        return EntryState(kind, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, None, target)

    def open(self, rel: bytes, offset: int = 0, length: int = -1) -> LocalReader:
        return LocalReader(self.path(rel))

    def plan(self, items) -> None:
        """Nothing to do: the CAR writer's own read-ahead (one batch) is enough on a local disk."""

    def close(self) -> None:
        pass
