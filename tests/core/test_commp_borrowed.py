"""CommP over buffers read in place: the kernel's root over a list of buffers, update_borrowed() (the CAR
writer's sink), recycled batch buffers, and the 4-way SHA-NI path against the other engines."""
from __future__ import annotations

import hashlib
import random

import pytest

from ptolemy_tui.core import commp, commp_py
from ptolemy_tui.core.commp import BATCH_BYTES, CommP, CommPError

HAVE_C = "c-portable" in commp.available_engines()
needs_c = pytest.mark.skipif(not HAVE_C, reason="the C kernel is not built")
C_ENGINES = [e for e in commp.available_engines() if e != "python"]


def payload(n: int, seed: str = "borrowed") -> bytes:
    return hashlib.shake_128(seed.encode()).digest(n)


def whole(data: bytes, **kw) -> commp.CommPResult:
    h = CommP(**kw)
    h.update(data)
    return h.digest()


def split(data: bytes, rng: random.Random, cuts: int) -> list:
    points = sorted(rng.randrange(len(data) + 1) for _ in range(cuts))
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


@needs_c
@pytest.mark.parametrize("k", [0, 1, 4, 9, 10, 12])
def test_root_over_a_list_of_buffers_equals_the_contiguous_root(k):
    from ptolemy_tui.core import _commp

    rng = random.Random(k)
    data = payload(127 << k, f"iov{k}")
    want = commp_py.root(data, k)
    for impl in _commp.impls():
        assert _commp.root(data, k, impl=impl) == want, impl
    for trial in range(6):
        before, after = payload(rng.randrange(300), "pre"), payload(rng.randrange(200), "post")
        parts = split(before + data + after, rng, rng.randrange(40))
        parts = [bytearray(p) if i % 3 == 0 else memoryview(p) if i % 3 == 1 else p for i, p in enumerate(parts)]
        for impl in _commp.impls():
            assert _commp.root_iov(parts, len(before), k, impl=impl) == want, (impl, trial)
    with pytest.raises(ValueError, match="fewer than"):
        _commp.root_iov([data], 1, k)
    with pytest.raises(TypeError):
        _commp.root_iov([data, 5], 0, k)


@needs_c
def test_four_way_sha_ni_matches_every_engine_on_odd_pair_counts():
    from ptolemy_tui.core import _commp

    if "sha-ni-x4" not in _commp.impls():
        pytest.skip("no SHA instructions on this CPU")
    for npairs in (1, 2, 3, 4, 5, 7, 8, 9, 33):
        blocks = payload(64 * npairs, f"pairs{npairs}")
        want = commp_py.hash_pairs(blocks)
        assert _commp.hash_pairs(blocks, impl="sha-ni-x4") == want, npairs
    data = payload(3 * BATCH_BYTES // 2 + 77, "x4")
    assert whole(data, engine="c-sha-ni-x4") == whole(data, engine="c-avx512" if "avx512" in _commp.impls()
                                                      else "c-sha-ni") == whole(data[:], engine="c-portable")


@pytest.mark.parametrize("engine", C_ENGINES[:1] + ["python"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("prefix", [0, 59, 300])
def test_borrowed_segments_give_the_same_commp_and_come_back_in_order(engine, threads, prefix):
    """Random segmentations; every buffer is overwritten as soon as on_done says it is free, so a hasher that
    read a segment after giving it back would get a different CommP."""
    rng = random.Random(f"{engine}{threads}{prefix}")
    size = BATCH_BYTES * 2 + 12345 if engine != "python" else 70_000
    data = payload(size, "stream")
    want = whole(data, engine=engine)
    h = CommP(deferred_prefix=prefix, threads=threads, engine=engine)
    if prefix:
        h.set_prefix(data[:prefix])
    done: list[int] = []
    pos, call = prefix, 0
    while pos < size:
        n = min(size - pos, rng.choice([1, 50, 127, 4000, 300_000, BATCH_BYTES + 3]))
        segs = [bytearray(p) for p in split(data[pos:pos + n], rng, rng.randrange(6))]

        def give_back(call=call, segs=segs):
            done.append(call)
            for s in segs:
                s[:] = bytes(len(s))  # the caller reuses its buffers at once

        h.update_borrowed(segs, give_back)
        pos += n
        call += 1
    got = h.digest()
    h.close()
    assert done == list(range(call))  # each once, in call order
    assert got == want
    assert got.payload_size == size


def test_update_and_update_borrowed_mix():
    data = payload(BATCH_BYTES + 5000, "mix")
    h = CommP(threads=2, engine="c" if HAVE_C else "python")
    calls = []
    h.update(data[:1000])
    h.update_borrowed([memoryview(data)[1000:1200], data[1200:BATCH_BYTES]], lambda: calls.append(1))
    h.update(data[BATCH_BYTES:BATCH_BYTES + 10])
    h.update_borrowed([data[BATCH_BYTES + 10:]], lambda: calls.append(2))
    assert h.digest() == whole(data)
    assert calls == [1, 2]


def test_borrowed_errors_still_give_the_buffers_back():
    h = CommP()
    calls = []
    h.update(payload(100))
    h.digest()
    with pytest.raises(CommPError, match="after digest"):
        h.update_borrowed([b"x" * 200], lambda: calls.append("late"))
    assert calls == ["late"]


def test_batch_buffers_are_recycled_not_reallocated(monkeypatch):
    """update() with a reused caller buffer and two threads: a handful of batch buffers, whatever the length."""
    allocated = []
    real = CommP._take_buffer

    def counting(self):
        buf = real(self)
        if all(buf is not b for b in allocated):
            allocated.append(buf)
        return buf

    monkeypatch.setattr(CommP, "_take_buffer", counting)
    data = payload(BATCH_BYTES * 12 + 999, "recycle")
    h = CommP(threads=2, engine="c" if HAVE_C else "python")
    chunk = bytearray(1 << 20)  # a reused read buffer: the hasher must copy, into recycled batch buffers
    for pos in range(0, len(data), len(chunk)):
        n = min(len(chunk), len(data) - pos)
        chunk[:n] = data[pos:pos + n]
        h.update(memoryview(chunk)[:n])
    assert h.digest() == whole(data)
    assert len(allocated) <= 2 * 2 + 3  # in flight (2 per thread), the one filling, and slack for timing
