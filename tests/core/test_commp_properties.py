"""Property tests: the C engines (AVX-512, SHA-NI, portable) and the Python engine agree on random payloads, on every
split of one payload into update() calls, and with a deferred prefix; the kernels agree with bit-level specs."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptolemy_tui.core import commp, commp_py
from ptolemy_tui.core.commp import CommP
from tests.core.commp_cases import naive_fr32, naive_root

ENGINES = commp.available_engines()
C_ENGINES = [e for e in ENGINES if e != "python"]
pytestmark = pytest.mark.skipif(not C_ENGINES, reason="the C kernel is not built: nothing to compare")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

payloads = st.binary(min_size=65, max_size=5000)
# mostly-zero payloads with a few set bytes exercise the bit boundaries of Fr32
sparse = st.integers(65, 3000).flatmap(
    lambda n: st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 255)), max_size=8).map(
        lambda sets: _sparse(n, sets)))


def _sparse(n, sets):
    b = bytearray(n)
    for i, v in sets:
        b[i] = v
    return bytes(b)


def digest(data, engine, **kw):
    h = CommP(engine=engine, **kw)
    h.update(data)
    return h.digest()


@SETTINGS
@given(data=st.one_of(payloads, sparse))
def test_engines_agree_on_random_payloads(data):
    results = {e: digest(data, e) for e in ENGINES}
    assert len(set(results.values())) == 1, results


@settings(max_examples=15, deadline=None)
@given(data=st.binary(min_size=65, max_size=700))
def test_engines_agree_with_the_naive_spec(data):
    root, padded = naive_root(data)
    for e in ENGINES:
        r = digest(data, e)
        assert (r.commitment, r.padded_piece_size) == (root, padded), e


@SETTINGS
@given(data=st.data(), payload=payloads)
def test_every_split_gives_the_same_answer(data, payload):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=12)))
    engine = data.draw(st.sampled_from(ENGINES))
    h = CommP(engine=engine)
    last = 0
    for cut in cuts + [len(payload)]:
        h.update(payload[last:cut])
        last = cut
    assert h.digest() == digest(payload, C_ENGINES[0])


def test_every_single_split_point_of_one_payload():
    """Exhaustive: all two-piece splits of a 1017-byte payload (crossing 8 quads), each engine."""
    payload = hashlib.shake_128(b"split").digest(1017)
    want = digest(payload, C_ENGINES[0])
    for engine in ENGINES:
        for cut in range(len(payload) + 1):
            h = CommP(engine=engine)
            h.update(payload[:cut])
            h.update(payload[cut:])
            assert h.digest() == want, (engine, cut)


@SETTINGS
@given(data=st.data(), payload=payloads)
def test_deferred_prefix_gives_the_same_answer(data, payload):
    prefix = data.draw(st.integers(1, len(payload)))
    engine = data.draw(st.sampled_from(ENGINES))
    cuts = sorted(data.draw(st.lists(st.integers(prefix, len(payload)), max_size=6)))
    when = data.draw(st.integers(0, len(cuts) + 1))  # set_prefix before, between or after the updates
    h = CommP(deferred_prefix=prefix, engine=engine)
    last = prefix
    for i, cut in enumerate(cuts + [len(payload)]):
        if i == when:
            h.set_prefix(payload[:prefix])
        h.update(payload[last:cut])
        last = cut
    if when > len(cuts):
        h.set_prefix(payload[:prefix])
    assert h.digest() == digest(payload, C_ENGINES[0])


@settings(max_examples=8, deadline=None)
@given(seed=st.binary(min_size=1, max_size=8), extra=st.integers(0, 3 * 127 * 64), prefix=st.sampled_from([59, 127, 300]),
       step=st.integers(1000, 300_000))
def test_two_threads_and_prefix_across_batches(seed, extra, prefix, step):
    n = (127 << commp.BATCH_LOG2) + extra
    payload = hashlib.shake_128(seed).digest(n)
    h = CommP(deferred_prefix=prefix, threads=2, engine="c")
    for off in range(prefix, n, step):
        h.update(payload[off:off + step])
    h.set_prefix(payload[:prefix])
    assert h.digest() == digest(payload, "c")


@SETTINGS
@given(quads=st.binary(min_size=0, max_size=127 * 9).map(lambda b: b[: len(b) // 127 * 127]))
def test_fr32_kernels_match_the_bit_level_spec(quads):
    from ptolemy_tui.core import _commp

    want = b"".join(naive_fr32(quads[i:i + 127]) for i in range(0, len(quads), 127))
    assert _commp.fr32(quads) == want
    assert commp_py.fr32(quads) == want


@SETTINGS
@given(blocks=st.binary(min_size=0, max_size=64 * 9).map(lambda b: b[: len(b) // 64 * 64]))
def test_pair_hash_kernels_match_hashlib(blocks):
    from ptolemy_tui.core import _commp

    want = b"".join(
        (lambda h: h[:31] + bytes([h[31] & 0x3F]))(hashlib.sha256(blocks[i:i + 64]).digest())
        for i in range(0, len(blocks), 64))
    assert _commp.hash_pairs(blocks) == want
    for impl in _commp.impls():
        assert _commp.hash_pairs(blocks, impl=impl) == want, impl
    assert commp_py.hash_pairs(blocks) == want


@pytest.mark.parametrize("k", range(0, 13))
def test_subtree_roots_agree_for_every_size(k):
    from ptolemy_tui.core import _commp

    data = hashlib.shake_128(b"k%d" % k).digest(127 << k)
    want = commp_py.root(data, k)
    assert _commp.root(data, k) == want
    for impl in _commp.impls():
        assert _commp.root(data, k, impl=impl) == want, impl
