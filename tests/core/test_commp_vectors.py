"""Every known CommP vector: ../shared/vectors/commp.json (copied to tests/vectors) and the oracle-generated set."""
from __future__ import annotations

import hashlib

import pytest

from ptolemy_tui.core import commp
from ptolemy_tui.core.commp import CommP, CommPError
from tests.core.commp_cases import build_generated, build_shared, load

SHARED = load("commp.json")
GENERATED = load("commp_generated.json")
C_ENGINES = [e for e in commp.available_engines() if e != "python"]
ALL_ENGINES = C_ENGINES + ["python"]


def digest(data: bytes, engine: str, threads: int = 1, **kw) -> commp.CommPResult:
    h = CommP(engine=engine, threads=threads, **kw)
    h.update(data)
    return h.digest()


@pytest.mark.parametrize("engine", ALL_ENGINES)
@pytest.mark.parametrize("vector", SHARED["vectors"], ids=lambda v: v["data"][:40])
def test_shared_vectors(vector, engine):
    data = build_shared(vector["data"])
    r = digest(data, engine)
    assert r.payload_size == len(data)
    if "commp" in vector:
        assert r.piece_cid_v1 == vector["commp"]
    if "padded_piece_size" in vector:
        assert r.padded_piece_size == vector["padded_piece_size"]
        assert r.unpadded_piece_size == vector["padded_piece_size"] * 127 // 128
    if "piece_cid_v2" in vector:
        assert r.piece_cid_v2 == vector["piece_cid_v2"]


def test_shared_zero_piece_128_root_prefix():
    r = digest(bytes(127), ALL_ENGINES[0])
    assert r.commitment.hex().startswith(SHARED["zero_piece_128_root_hex_prefix"])


@pytest.mark.parametrize("engine", ALL_ENGINES)
def test_zero_piece_32GiB_by_padding(engine):
    """zero_piece_32GiB: 127 zero bytes padded up to a 32 GiB piece (zero subtrees, not 32 GiB of hashing)."""
    z = SHARED["zero_piece_32GiB"]
    r = digest(bytes(127), engine, min_padded_piece=z["padded_piece_size"])
    assert r.piece_cid_v1 == z["commp"]
    assert r.padded_piece_size == z["padded_piece_size"]
    assert commp.piece_cid_v1(commp.zero_piece_commitment(z["padded_piece_size"])) == z["commp"]


@pytest.mark.parametrize("engine", ALL_ENGINES)
@pytest.mark.parametrize("error", SHARED["errors"], ids=lambda e: e["data"])
def test_shared_errors(error, engine):
    h = CommP(engine=engine)
    h.update(build_shared(error["data"]))
    with pytest.raises(CommPError, match=error["error"]):
        h.digest()


def _generated_cases():
    for v in GENERATED["vectors"]:
        size = v["data"]["size"]
        for engine in ALL_ENGINES:
            # the slow engines get every vector up to 4.2 MB (one batch + 1 byte); the C engine all of them
            if engine == C_ENGINES[0] or (engine != "python" and size <= 5_000_000) or size <= 4_200_000:
                yield pytest.param(v, engine, id=f"{v['data']['kind']}-{size}-{engine}")


@pytest.mark.parametrize("vector,engine", list(_generated_cases()))
def test_generated_vectors(vector, engine):
    data = build_generated(vector["data"])
    r = digest(data, engine)
    assert r.piece_cid_v1 == vector["commp"]
    assert (r.payload_size, r.unpadded_piece_size, r.padded_piece_size) == (
        vector["payload_size"], vector["unpadded_piece_size"], vector["padded_piece_size"])
    # every vector is ≥ 65 bytes (CommP's minimum), where piece CID v2 is defined, 65–126 bytes included
    assert r.piece_cid_v2 == vector["piece_cid_v2"]
    assert r.to_json() == {k: vector[k] for k in ("commp", "piece_cid_v2", "payload_size", "unpadded_piece_size",
                                     "padded_piece_size")}


@pytest.mark.skipif(not C_ENGINES, reason="the C kernel is not built")
@pytest.mark.parametrize("vector", [v for v in GENERATED["vectors"] if v["data"]["size"] > 1 << 20],
                         ids=lambda v: f"{v['data']['kind']}-{v['data']['size']}")
def test_generated_vectors_two_threads_deferred_prefix(vector):
    """The CAR writer's mode: 59-byte prefix supplied last, two threads, uneven chunks up to ~4 MiB."""
    data = build_generated(vector["data"])
    h = CommP(deferred_prefix=59, threads=2, engine="c")
    pos, step = 59, 1
    while pos < len(data):
        h.update(data[pos:pos + step])
        pos += step
        step = min(step * 7 + 3, 4 << 20)
    h.set_prefix(data[:59])
    r = h.digest()
    assert r.piece_cid_v1 == vector["commp"]
    assert r.piece_cid_v2 == vector["piece_cid_v2"]


SMALL_V2 = load("commp_small_v2.json")


@pytest.mark.parametrize("vector", SMALL_V2["vectors"], ids=lambda v: str(v["payload_size"]))
def test_piece_cid_v2_of_65_to_126_bytes_matches_data_segment(vector):
    data = b"".join(hashlib.sha256(b"ptolemy-v2-%d-%d" % (vector["payload_size"], i)).digest()
                    for i in range(4))[:vector["payload_size"]]
    r = digest(data, ALL_ENGINES[0])
    assert (r.piece_cid_v1, r.piece_cid_v2, r.padded_piece_size) == (
        vector["commp"], vector["piece_cid_v2"], vector["padded_piece_size"])
