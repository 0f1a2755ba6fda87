"""The source seam with LocalSource: change tokens, entry kinds, and the CAR writer reading through a Reader."""
from __future__ import annotations

import io
import os

import pytest

from ptolemy_tui.core.car import write_car
from ptolemy_tui.core.source import ScanFacts, SourceMissing, changed_since_scan, changed_while_reading
from ptolemy_tui.core.source_local import LocalSource
from ptolemy_tui.core.unixfs import SourceEntry


def test_local_stat_kinds_and_token(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    os.symlink("f", tmp_path / "l")
    os.mkfifo(tmp_path / "p")
    src = LocalSource(str(tmp_path))
    f = src.stat(b"f")
    assert (f.kind, f.size) == ("file", 3)
    assert f.token == src.stat(b"f").token
    assert src.stat(b"l").kind == "symlink" and src.stat(b"l").link_target == b"f"
    assert src.stat(b"p").kind == "special"
    with pytest.raises(SourceMissing):
        src.stat(b"gone")
    assert not changed_since_scan(f, ScanFacts("file", 3, f.mtime_ns))
    assert changed_since_scan(f, ScanFacts("file", 4, f.mtime_ns))
    # a rewrite of the same size with the mtime put back still changes ctime (part of the token)
    before = f
    (tmp_path / "f").write_bytes(b"xyz")
    os.utime(tmp_path / "f", ns=(before.mtime_ns, before.mtime_ns))
    after = src.stat(b"f")
    assert not changed_since_scan(after, ScanFacts("file", 3, before.mtime_ns))
    assert changed_while_reading(before, after)
    assert src.label(b"f") == "f" and src.describe(b"f") == str(tmp_path / "f")


class _Dribble:
    """A Reader that hands out at most 1000 bytes a call, as a slow network source may."""

    def __init__(self, data: bytes):
        self.data = data
        self.closed = False

    def readinto_at(self, view, pos):
        part = self.data[pos:pos + min(len(view), 1000)]
        view[:len(part)] = part
        return len(part)

    def close(self):
        self.closed = True


def test_car_writer_reads_through_the_given_reader(tmp_path):
    blobs = {b"a": os.urandom(700_000), b"b": b"", b"c": os.urandom(262144)}
    for name, data in blobs.items():
        (tmp_path / name.decode()).write_bytes(data)
    entries = [SourceEntry(name, os.path.join(os.fsencode(tmp_path), name), 0, len(data)) for name, data in blobs.items()]
    by_path = io.BytesIO()
    expected = write_car(entries, by_path, wrap=True)
    readers, after = [], []

    def open_reader(entry):
        readers.append(_Dribble(blobs[os.path.basename(entry.source)]))
        return readers[-1]

    through = io.BytesIO()
    got = write_car(entries, through, wrap=True, open_reader=open_reader, after_read=lambda e: after.append(e.dag_path))
    assert through.getvalue() == by_path.getvalue() and got.root_cid == expected.root_cid
    assert sorted(after) == [b"a", b"b", b"c"]
    assert len(readers) == 2 and all(r.closed for r in readers)  # the empty file opens nothing
