"""The CAR writer's output path: leaves written from the read buffers (writev on a real file, write per segment
elsewhere), frame-buffer rotation and read-buffer recycling give the same bytes as a plain copy would."""
from __future__ import annotations

import hashlib
import io
import os

import pytest

from ptolemy_tui.core import car as carmod
from ptolemy_tui.core import unixfs
from ptolemy_tui.core.car import SourceEntry, write_car
from tests.core.sinks import RecordingSink as Recorder

C = unixfs.CHUNK_SIZE


def _entries(tmp_path):
    big = hashlib.shake_256(b"zero copy").digest(9 * C + 4321)
    files = {"big": big, "zeros": bytes(6 * C), "small": b"s" * 5000, "mid": big[:C + 100], "empty": b""}
    entries = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        entries.append(SourceEntry(b"d/" + name.encode(), str(tmp_path / name), 0, len(data)))
    entries.append(SourceEntry(b"d/range", str(tmp_path / "big"), 77, 3 * C))
    return entries


def _expected(entries) -> bytes:
    """The CAR built block by block from the DAG writer's puts: no batching, no buffers, no threads."""
    sections = []
    seen = set()

    def put(cid, data):
        if cid not in seen:
            seen.add(cid)
            sections.append(carmod.encode_varint(len(cid) + len(data)) + cid + bytes(data))

    def read(entry, chunk_size):
        if entry.length:
            with open(entry.source, "rb") as f:
                f.seek(entry.offset)
                yield memoryview(f.read(entry.length))

    root, _ = unixfs.DagWriter(put, read, unixfs.get_params("kubo")).build(
        unixfs.dag_root(unixfs.build_tree(entries), False))
    return carmod.car_header(root) + b"".join(sections)


def _to_bytesio(entries, sink=None) -> bytes:
    out = io.BytesIO()
    write_car(entries, out, sink=sink)
    return out.getvalue()


def _to_file(tmp_path, entries, sink=None) -> bytes:
    path = tmp_path / "o.car"
    with open(path, "w+b") as out:
        out.write(b"junk before the CAR")
        write_car(entries, out, sink=sink)
        out.write(b"after")
    blob = path.read_bytes()
    assert blob.startswith(b"junk before the CAR") and blob.endswith(b"after")
    return blob[len(b"junk before the CAR"):-len(b"after")]


@pytest.mark.parametrize("small_buffers", [False, True])
def test_file_and_bytesio_outputs_and_the_sink_are_identical(tmp_path, monkeypatch, small_buffers):
    if small_buffers:  # many read batches and frame-buffer rotations between leaves
        monkeypatch.setattr(carmod, "READ_SIZE", 2 * C)
        monkeypatch.setattr(carmod, "WRITE_BUFFER", 1000)
    entries = _entries(tmp_path)
    expected = _expected(entries)
    sink = Recorder()
    assert _to_file(tmp_path, entries, sink) == expected
    assert bytes(sink.data) == expected[carmod.CARV1_HEADER_LENGTH:] and sink.prefix == expected[:59]
    sink = Recorder()
    assert _to_bytesio(entries, sink) == expected
    assert bytes(sink.data) == expected[carmod.CARV1_HEADER_LENGTH:]


def test_short_writev_calls_are_resumed(tmp_path, monkeypatch):
    real = os.writev
    calls = []

    def stingy(fd, buffers):
        calls.append(len(buffers))
        budget = 10000 + len(calls) % 7  # stop inside a segment, at a segment boundary or anywhere between
        parts = []
        for b in buffers:
            b = memoryview(b)[:budget]
            parts.append(b)
            budget -= len(b)
            if not budget:
                break
        return real(fd, parts)

    monkeypatch.setattr(carmod.os, "writev", stingy)
    entries = _entries(tmp_path)
    assert _to_file(tmp_path, entries) == _expected(entries)
    assert calls


def test_read_buffers_are_recycled_and_memory_stays_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(carmod, "READ_SIZE", C)
    created = []
    real = carmod._SourceReader.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        created.append(self)

    monkeypatch.setattr(carmod._SourceReader, "__init__", spy)
    monkeypatch.setattr(carmod, "_spares", carmod._Spares())
    entries = _entries(tmp_path)
    assert _to_bytesio(entries) == _expected(entries)
    reader = created[0]
    assert reader.free.retired and reader.free.qsize() == 0
    assert len(carmod._spares.by_size[C]) == carmod._SourceReader.BUFFERS  # every read buffer came back


def test_buffers_are_reused_by_the_next_car(tmp_path):
    """A worker writes CAR after CAR: the read and frame buffers of one come back (after CommP is done with
    them) and the next takes them, instead of faulting in 40 MiB of fresh pages per container."""
    from ptolemy_tui.core import car as car_module
    from ptolemy_tui.core.commp import CommP

    src = tmp_path / "big.bin"
    src.write_bytes(hashlib.shake_128(b"reuse").digest(9 << 20))
    results = []
    for i in range(2):
        hasher = CommP(deferred_prefix=car_module.CARV1_HEADER_LENGTH, threads=2)
        with open(tmp_path / f"out{i}.car", "w+b") as out:
            res = car_module.write_car(car_module.entries_for_paths([str(src)]), out, sink=hasher)
        results.append((res.root_cid, hasher.digest().piece_cid_v1, (tmp_path / f"out{i}.car").read_bytes()))
        hasher.close()
        spares = car_module._spares.by_size
        if i == 0:
            first = {id(b) for size in (car_module.READ_SIZE, car_module.WRITE_BUFFER) for b in spares.get(size, [])}
            assert len(spares[car_module.READ_SIZE]) >= car_module._SourceReader.BUFFERS
            assert len(spares[car_module.WRITE_BUFFER]) >= car_module._Output.BUFFERS
    after = {id(b) for size in (car_module.READ_SIZE, car_module.WRITE_BUFFER) for b in spares.get(size, [])}
    assert after == first  # the same buffers, taken and given back
    assert results[0] == results[1]
