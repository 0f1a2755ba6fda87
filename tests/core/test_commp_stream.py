"""The streaming API: deferred prefix, padding, threads, buffer ownership, errors, engine selection, files."""
from __future__ import annotations

import hashlib
import os

import pytest

from ptolemy_tui.core import commp, commp_py
from ptolemy_tui.core.commp import MAX_PAYLOAD, CommP, CommPError, commp_of_file, commp_of_stream
from tests.core.commp_cases import naive_root

BATCH = 127 << commp.BATCH_LOG2
HAVE_C = "c-portable" in commp.available_engines()
needs_c = pytest.mark.skipif(not HAVE_C, reason="the C kernel is not built")


def payload(n: int, seed: str = "stream") -> bytes:
    return hashlib.shake_128(f"{seed}-{n}".encode()).digest(n)


def whole(data: bytes, engine: str = "auto", **kw) -> commp.CommPResult:
    h = CommP(engine=engine, **kw)
    h.update(data)
    return h.digest()


@pytest.mark.parametrize("n", [65, 126, 127, 128, 254, 255, 508, 509, 1000, 2032, 2033])
def test_matches_naive_reference(n):
    data = payload(n)
    root, padded = naive_root(data)
    for engine in commp.available_engines():
        r = whole(data, engine)
        assert r.commitment == root and r.padded_piece_size == padded, engine


@pytest.mark.parametrize("prefix,n", [
    (p, n) for p in (1, 58, 59, 60, 126, 127, 128, 253, 254, 255, 127 * 5 + 3, 127 * 8, 4000)
    for n in (65, 127, 300, 1016, 1017, 5000, BATCH + 300) if p <= n])
def test_deferred_prefix_equals_whole_stream(prefix, n):
    data = payload(n)
    want = whole(data, "c" if HAVE_C else "python")
    h = CommP(deferred_prefix=prefix, engine="c" if HAVE_C else "python")
    h.update(data[prefix:])
    h.set_prefix(data[:prefix])
    assert h.digest() == want


@needs_c
@pytest.mark.parametrize("prefix", [59, 127 * 3 + 1, BATCH + 17, 2 * BATCH])
def test_deferred_prefix_across_batches_two_threads(prefix):
    """Prefixes that reach past the first batch (the left edge then spans several placeholder levels)."""
    data = payload(3 * BATCH + 12345)
    want = whole(data, "c")
    h = CommP(deferred_prefix=prefix, threads=2, engine="c")
    for off in range(prefix, len(data), 999_999):
        h.update(data[off:off + 999_999])
    h.set_prefix(data[:prefix])
    assert h.digest() == want


def test_prefix_may_be_set_before_the_stream_and_stream_may_end_inside_the_first_quad():
    data = payload(100)
    want = whole(data)
    h = CommP(deferred_prefix=59)
    h.set_prefix(data[:59])
    h.update(data[59:80])
    h.update(data[80:])
    assert h.digest() == want
    h = CommP(deferred_prefix=100)  # the whole payload is the prefix
    h.set_prefix(data)
    assert h.digest() == want


def test_left_edge_memory_is_logarithmic():
    """Only one kept sibling per tree level, whatever the stream length."""
    h = CommP(deferred_prefix=59, engine="c" if HAVE_C else "python")
    data = payload(BATCH)
    for _ in range(8):
        h.update(data)
    assert len(h._events) <= 20 and len(h._slots) <= 20
    h.set_prefix(bytes(59))
    h.digest()


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_agree_and_buffer_may_be_reused(threads):
    data = payload(2 * BATCH + 777)
    want = whole(data, "c" if HAVE_C else "python")
    h = CommP(threads=threads, engine="c" if HAVE_C else "python")
    buf = bytearray(BATCH + 1)
    view = memoryview(buf)
    for off in range(0, len(data), len(buf)):
        n = min(len(buf), len(data) - off)
        buf[:n] = data[off:off + n]
        h.update(view[:n])
        buf[:] = b"\xee" * len(buf)  # the caller scribbles over its buffer right after update() returns
    assert h.digest() == want


def test_input_types_and_empty_updates():
    data = payload(3000)
    want = whole(data)
    h = CommP()
    h.update(b"")
    h.update(bytearray(data[:1000]))
    h.update(memoryview(data)[1000:2000])
    h.update(memoryview(bytearray(data[2000:])).cast("B"))
    h.update(memoryview(b""))
    assert h.digest() == want
    import array

    arr = array.array("I", data[:2000])  # multi-byte items are taken as their bytes
    h = CommP()
    h.update(arr)
    assert h.digest() == whole(data[:2000])


def test_min_padded_piece():
    data = payload(1000)
    natural = whole(data)
    assert natural.padded_piece_size == 1024
    assert whole(data, min_padded_piece=512) == natural  # smaller than natural: no effect
    big = whole(data, min_padded_piece=1 << 20)
    assert big.padded_piece_size == 1 << 20 and big.unpadded_piece_size == 1040384
    root, padded = naive_root(data, min_leaves=(1 << 20) // 32)
    assert big.commitment == root and padded == 1 << 20
    # v2 encodes the larger padding
    assert big.piece_cid_v2 == commp.piece_cid_v2(root, 1000, 1 << 20) != natural.piece_cid_v2
    for bad in (100, 1000, 3 << 20, 128 << 30):
        with pytest.raises(CommPError):
            CommP(min_padded_piece=bad)


def test_v2_defined_from_65_bytes():
    # 65 bytes: a 128-byte piece (height 2) with 127 − 65 = 62 bytes of padding, as data-segment encodes it
    small = whole(payload(65))
    assert small.piece_cid_v2 == commp.piece_cid_v2(small.commitment, 65, 128)
    assert whole(payload(126)).piece_cid_v2.startswith("bafkzcib")
    assert whole(payload(127)).piece_cid_v2.startswith("bafkzcib")


def test_errors():
    with pytest.raises(CommPError, match="shorter than 65"):
        whole(payload(64))
    with pytest.raises(CommPError, match="shorter than 65"):
        CommP().digest()
    h = CommP(deferred_prefix=59)
    h.update(payload(100))
    with pytest.raises(CommPError, match="set_prefix"):
        h.digest()
    with pytest.raises(CommPError, match="58 bytes"):
        h.set_prefix(bytes(58))
    with pytest.raises(CommPError, match="without deferred_prefix"):
        CommP().set_prefix(bytes(59))
    h = CommP()
    h.update(payload(100))
    r = h.digest()
    assert h.digest() is r  # idempotent
    with pytest.raises(CommPError, match="after digest"):
        h.update(b"x")
    # too large: the limit is 64 GiB * 127/128 of payload (checked without hashing it)
    h = CommP(deferred_prefix=MAX_PAYLOAD)
    with pytest.raises(CommPError, match="largest piece"):
        h.update(b"x")
    with pytest.raises(CommPError):
        CommP(deferred_prefix=MAX_PAYLOAD + 1)
    for bad in (0, -1):
        with pytest.raises(CommPError):
            CommP(threads=bad)
    with pytest.raises(CommPError, match="unknown CommP engine"):
        CommP(engine="gpu")
    assert issubclass(CommPError, ValueError)


def test_largest_piece_size_bookkeeping():
    """A payload of exactly 64 GiB*127/128 is a 64 GiB piece: check the sizes on a deferred stub."""
    h = CommP(deferred_prefix=MAX_PAYLOAD)
    assert h._prefix_quads == (64 << 30) // 128


def test_engine_selection(monkeypatch):
    names = commp.available_engines()
    assert names[-1] == "python"
    assert commp.engine_name("python") == "python"
    monkeypatch.setenv(commp.ENGINE_ENV, "python")
    assert commp.engine_name() == "python"
    assert CommP().engine == "python"
    monkeypatch.setenv(commp.ENGINE_ENV, "bogus")
    assert commp.engine_name().startswith("unavailable")
    with pytest.raises(CommPError, match="PTOLEMY_COMMP_ENGINE"):
        CommP()
    monkeypatch.delenv(commp.ENGINE_ENV)
    if HAVE_C:
        assert commp.engine_name() in ("c-avx512", "c-sha-ni-x4", "c-sha-ni", "c-portable")
        figures = commp.calibrated_figures()
        assert commp.engine_name() == commp.engine_name("c") == max(figures, key=figures.get)
        assert commp.engine_reason().startswith("calibrated ")
        assert CommP(engine="c-portable").engine == "c-portable"
    # without the compiled kernel: auto falls back to Python, and asking for C is a clear error
    monkeypatch.setattr(commp, "_ckernel", None)
    assert commp.engine_name() == "python" and commp.available_engines() == ["python"]
    assert whole(payload(500)) == whole(payload(500), "python")
    with pytest.raises(CommPError, match="not built"):
        CommP(engine="c")


@needs_c
def test_sha_ni_reported_and_used_when_the_cpu_has_it():
    from ptolemy_tui.core import _commp

    with open("/proc/cpuinfo") if os.path.exists("/proc/cpuinfo") else open(os.devnull) as f:
        has_sha = " sha_ni" in f.read()
    if os.environ.get("PTOLEMY_COMMP_NO_SHANI", "0") not in ("", "0"):
        has_sha = False
    assert _commp.sha_ni() == has_sha
    assert ("sha-ni" in _commp.impls()) == has_sha == ("sha-ni-x4" in _commp.impls())
    assert commp.engine_name("c")[2:] in _commp.impls()
    if has_sha:
        assert CommP(engine="c-sha-ni").engine == "c-sha-ni"
        assert CommP(engine="c-sha-ni-x4").engine == "c-sha-ni-x4"
    else:
        with pytest.raises(CommPError, match="does not run on this CPU"):
            CommP(engine="c-sha-ni")


def test_commp_of_file_and_stream(tmp_path):
    data = payload(BATCH * 2 + 5000)
    path = tmp_path / "p.bin"
    path.write_bytes(data)
    want = whole(data)
    assert commp_of_file(path) == want
    assert commp_of_file(str(path), threads=2) == want
    import io

    assert commp_of_stream(io.BytesIO(data), threads=1) == want
    assert commp_of_stream(io.BufferedReader(io.BytesIO(data)), threads=2) == want
    with pytest.raises(FileNotFoundError):
        commp_of_file(tmp_path / "missing")


def test_python_kernel_rejects_bad_sizes():
    with pytest.raises(ValueError):
        commp_py.root(bytes(127 * 3), 1)
    with pytest.raises(ValueError):
        commp_py.fr32(bytes(128))
    with pytest.raises(ValueError):
        commp_py.hash_pairs(bytes(65))
    assert commp_py.fr32(b"") == b""


@needs_c
def test_c_kernel_rejects_bad_sizes():
    from ptolemy_tui.core import _commp

    with pytest.raises(ValueError):
        _commp.root(bytes(127 * 3), 1)
    with pytest.raises(ValueError):
        _commp.fr32(bytes(128))
    with pytest.raises(ValueError):
        _commp.hash_pairs(bytes(65))
    with pytest.raises(TypeError):
        _commp.root("text", 0)


@needs_c
def test_c_kernel_releases_the_gil():
    """While one thread is inside root(), another runs Python code (it could not if the GIL were held)."""
    import threading
    import time

    from ptolemy_tui.core import _commp

    data = payload(127 << 17)  # 16 MB: ~0.3 s in the portable kernel
    window = []

    def work():
        window.append(time.perf_counter())
        _commp.root(data, 17, impl="portable")
        window.append(time.perf_counter())

    worker = threading.Thread(target=work)
    seen = []
    worker.start()
    while worker.is_alive():
        seen.append(time.perf_counter())
        time.sleep(0)  # yields the GIL; with the GIL held by the kernel we could not come back until it returns
    worker.join()
    t0, t1 = window
    middle = [t for t in seen if t0 + 0.25 * (t1 - t0) < t < t0 + 0.75 * (t1 - t0)]
    assert middle, (t1 - t0, len(seen))


def test_bench_script_runs_and_agrees(tmp_path):
    """bench/commp.py on a small file: every engine row agrees (it asserts so) and the table is printed."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "commp.py"
    path = tmp_path / "p.bin"
    path.write_bytes(payload(3 << 20))
    proc = subprocess.run([sys.executable, str(script), "--file", str(path), "--python-slice", "1MiB",
                           "--repeat", "1", "--no-node"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| engine | bytes | wall s | MB/s |" in proc.stdout
    assert f"piece CID {whole(path.read_bytes()).piece_cid_v1}" in proc.stdout
    assert path.exists()  # --file is never deleted
