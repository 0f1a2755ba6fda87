"""The leaf hasher: every SHA-256 engine (C AVX-512 / SHA-NI / portable, hashlib) gives the same digests and CARs."""
from __future__ import annotations

import hashlib
import io
import os

import pytest

from ptolemy_tui.core import car as carmod
from ptolemy_tui.core import sha256_batch, unixfs
from ptolemy_tui.core.car import SourceEntry, write_car

ENGINES = sha256_batch.available_engines()
C_ENGINES = [e for e in ENGINES if e != "python"]


def _expected(data: bytes, chunk: int) -> bytes:
    return b"".join(hashlib.sha256(data[s:s + chunk]).digest() for s in range(0, len(data), chunk))


def _data(n: int) -> bytes:
    return hashlib.shake_256(b"sha256 batch %d" % n).digest(n)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("chunk", [1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 4096])
def test_every_engine_matches_hashlib(engine, chunk):
    fn = sha256_batch.chunk_hasher(engine)
    # chunk counts around the 16-lane groups, last chunk full, one byte short and half short
    for count in (0, 1, 2, 15, 16, 17, 31, 32, 33, 40):
        for short in (0, 1, chunk // 2):
            n = max(0, count * chunk - short) if count else 0
            data = _data(n)
            assert fn(data, chunk) == _expected(data, chunk), (count, short)
            assert fn(memoryview(bytearray(data)), chunk) == _expected(data, chunk)


@pytest.mark.parametrize("engine", ENGINES)
def test_full_size_leaves(engine):
    data = _data(33 * unixfs.CHUNK_SIZE + 12345)
    assert sha256_batch.chunk_hasher(engine)(data, unixfs.CHUNK_SIZE) == _expected(data, unixfs.CHUNK_SIZE)


def test_engine_choice_and_environment(monkeypatch):
    monkeypatch.setenv(sha256_batch.ENGINE_ENV, "python")
    assert sha256_batch.resolve()[0] == "python"
    monkeypatch.setenv(sha256_batch.ENGINE_ENV, "sha-3")
    with pytest.raises(ValueError):
        sha256_batch.resolve()
    monkeypatch.delenv(sha256_batch.ENGINE_ENV)
    assert sha256_batch.resolve()[0] == ENGINES[0]
    assert sha256_batch.resolve("python")[0] == "python"
    with pytest.raises(ValueError):
        sha256_batch.chunk_hasher("c-nothing")


@pytest.mark.skipif(not C_ENGINES, reason="the C kernel is not built here")
def test_c_kernel_refuses_a_bad_chunk_size():
    with pytest.raises(ValueError):
        sha256_batch.chunk_hasher(C_ENGINES[0])(b"abc", 0)


def _car(entries, **kw) -> bytes:
    out = io.BytesIO()
    write_car(entries, out, **kw)
    return out.getvalue()


@pytest.mark.parametrize("engine", C_ENGINES)
def test_cars_are_identical_with_every_engine(tmp_path, monkeypatch, engine):
    """Several read batches (4 MiB), a short last chunk, duplicate leaves, small files and a tiny-chunk profile."""
    big = _data(2 * carmod.READ_SIZE + 5 * unixfs.CHUNK_SIZE + 777)
    zeros = bytes(20 * unixfs.CHUNK_SIZE)
    paths = {}
    for name, data in (("big", big), ("zeros", zeros), ("small", b"x" * 1000), ("empty", b"")):
        p = tmp_path / name
        p.write_bytes(data)
        paths[name] = str(p)
    entries = [SourceEntry(name.encode(), path, 0, (tmp_path / name).stat().st_size) for name, path in paths.items()]
    entries.append(SourceEntry(b"range", paths["big"], 1000, 3 * unixfs.CHUNK_SIZE))
    tiny = unixfs.Params("tiny", False, chunk_size=100, max_links=7)
    monkeypatch.setenv(sha256_batch.ENGINE_ENV, "python")
    reference = [_car(entries), _car(entries, profile="go-car"), _car(entries[:1], _params=tiny)]
    monkeypatch.setenv(sha256_batch.ENGINE_ENV, engine)
    assert [_car(entries), _car(entries, profile="go-car"), _car(entries[:1], _params=tiny)] == reference


@pytest.mark.skipif("c-avx512" not in ENGINES, reason="no AVX-512 here")
def test_avx512_without_sha_ni_pads_short_groups(tmp_path):
    """With SHA-NI switched off, groups of fewer than 16 chunks run on AVX-512 with spare lanes."""
    import subprocess
    import sys

    code = ("import hashlib\n"
            "from ptolemy_tui.core import sha256_batch\n"
            "assert 'c-sha-ni' not in sha256_batch.available_engines()\n"
            "fn = sha256_batch.chunk_hasher('c-avx512')\n"
            "for n in (1, 7, 16, 17, 40):\n"
            "    for size in (64 * n, 64 * n - 9, 100 * n - 50):\n"
            "        d = bytes(range(256)) * (size // 256 + 1)\n"
            "        d = d[:size]\n"
            "        exp = b''.join(hashlib.sha256(d[s:s + 100]).digest() for s in range(0, len(d), 100))\n"
            "        assert fn(d, 100) == exp, (n, size)\n")
    env = dict(os.environ, PTOLEMY_COMMP_NO_SHANI="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
