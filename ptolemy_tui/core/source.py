"""The source seam: where a project's bytes come from (a local tree today, an S3 bucket too).

Scan, containerize, the worker and the CAR writer see a project's data only through a `Source`:

- `walker(threads, out, cancel)` lists everything under the root as *chunks* on `out` (a queue), then None at
  the end, or an exception. The chunk layout is local_walk's (see its docstring): per directory (or prefix),
  the regular files flat and ready to bind, every other entry as a tuple, the subdirectory names.
- `stat(rel)` re-checks one entry now: an `EntryState` whose `token` changes whenever the content may have.
- `open(rel, offset, length)` gives a `Reader` of that byte range: `readinto_at(view, pos)` fills view with
  bytes from absolute position pos and returns how many it put (0: the object ends there), like preadv.
  A source may read ahead inside the range it was given (S3 does); the caller reads the range in order.
- `describe(rel)` is an entry's full location (a path, or s3://bucket/key); `label(rel)` the name that error
  messages use (relative to a local root, as before the seam; the full s3:// URL for an object).

`check_before(state, expected)` / `check_after(before, after)` are the two comparisons a build makes around
each item, so a worker can fail a container whose source changed since the scan, or while it was read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ptolemy_tui.core import unixfs
from ptolemy_tui.core.display import display_text
from ptolemy_tui.core.unixfs import SourceEntry

KINDS = ("file", "dir", "symlink", "special")


class SourceError(Exception):
    """The source cannot be reached or listed; the message is one line for the operator."""


class SourceMissing(SourceError):
    """The entry is gone (deleted since the scan)."""


class SourceChanged(Exception):
    """A source is not what was scanned: shorter than its entry says, or its token moved during the read."""


@dataclass(frozen=True)
class EntryState:
    """An entry as the source sees it now. mtime_ns is LastModified for objects; etag is None locally."""

    kind: str
    size: int
    mtime_ns: int = 0
    ctime_ns: int = 0
    inode: int = 0
    etag: str | None = None
    link_target: bytes | None = None

    @property
    def token(self) -> tuple:
        """Equal tokens: the content is taken as unchanged. Locally (size, mtime_ns, ctime_ns, inode); for an
        object (size, LastModified, ETag)."""
        return (self.kind, self.size, self.mtime_ns, self.ctime_ns, self.inode, self.etag, self.link_target)


@dataclass(frozen=True)
class ScanFacts:
    """What the scan recorded for an entry, as the build compares it (the scan stores no ctime)."""

    kind: str
    size: int
    mtime_ns: int
    etag: str | None = None
    link_target: bytes | None = None


def changed_since_scan(state: EntryState, expected: ScanFacts) -> bool:
    if expected.kind == "symlink":
        return state.kind != "symlink" or (state.link_target or b"") != (expected.link_target or b"")
    if state.kind != "file" or state.size != expected.size or state.mtime_ns != expected.mtime_ns:
        return True
    return expected.etag is not None and state.etag != expected.etag


def changed_while_reading(before: EntryState, after: EntryState) -> bool:
    return before.token != after.token


class Reader(Protocol):
    def readinto_at(self, view: memoryview, pos: int) -> int: ...

    def close(self) -> None: ...


class Source(Protocol):
    kind: str       # "local" or "s3"
    location: str   # the target as the operator gave it: a directory, or s3://bucket[/prefix]

    def check(self) -> None:
        """Raise SourceError (one line) unless the root can be listed now."""

    def walker(self, threads: int, out, cancel, mode: str = "process"): ...

    def stat(self, rel: bytes) -> EntryState: ...

    def open(self, rel: bytes, offset: int, length: int) -> Reader: ...

    def describe(self, rel: bytes) -> str: ...

    def label(self, rel: bytes) -> str: ...

    def plan(self, items: list[tuple[bytes, int, int, str | None]]) -> None:
        """A hint: the (rel, offset, length, expected etag) ranges about to be read, in read order."""

    def close(self) -> None:
        """Stop any reading ahead."""


def read_order(entries: list[SourceEntry], wrap: bool, profile: str = "kubo") -> list[SourceEntry]:
    """The file entries in the order the CAR writer reads them (its DAG walk), by a walk that reads nothing:
    the order depends on the names only, never on the bytes."""
    order: list[SourceEntry] = []

    def record(entry: SourceEntry, _chunk_size: int):
        if entry.kind == "file":
            order.append(entry)
        return iter(())

    params = unixfs.get_params(profile)
    root = unixfs.dag_root(unixfs.build_tree(entries), wrap)
    unixfs.DagWriter(lambda _cid, _data: None, record, params).build(root)
    return order


def text(raw: bytes) -> str:
    """A name for display, by the one escaping rule of core.display (as the store's path_text)."""
    return display_text(raw)
