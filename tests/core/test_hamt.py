"""HAMT pieces: murmur3, bucket indexes, the minimal trie, and the shard node bytes."""
from __future__ import annotations

import random

from ptolemy_tui.core import dagpb, hamt


def test_murmur3_x64_128_reference_values():
    # SMHasher's MurmurHash3_x64_128, seed 0
    assert hamt.murmur3_x64_128(b"") == (0, 0)
    assert hamt.murmur3_x64_128(b"hello") == (0xCBD8A7B341BD9B02, 0x5B1E906A48AE1D19)
    assert hamt.murmur3_x64_128(b"The quick brown fox jumps over the lazy dog") == \
        (0xE34BBC7BBC071B6C, 0x7A433CA9C49A9347)


def test_buckets_take_the_hash_from_its_most_significant_byte():
    h = 0x0123456789ABCDEF
    assert [hamt.bucket(h, d) for d in range(8)] == [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]
    assert hamt.label(0x0A) == b"0A" and hamt.label(255) == b"FF"


def _shape(shard):
    return {i: (_shape(c) if isinstance(c, hamt.Shard) else c) for i, c in shard.children.items()}


def test_the_trie_does_not_depend_on_insert_order():
    names = [b"file-%d" % i for i in range(3000)]
    first = _shape(hamt.build_trie(names))
    random.Random(7).shuffle(names)
    assert _shape(hamt.build_trie(names)) == first
    # sub-shards exist only where names collide
    def check(shard):
        for child in shard.children.values():
            if isinstance(child, hamt.Shard):
                assert len(child.children) >= 2 or any(isinstance(c, hamt.Shard) for c in child.children.values())
                check(child)
    check(hamt.build_trie(names))


def test_shard_data_and_bitmap():
    shard = hamt.Shard(0)
    shard.children = {0: b"a", 9: b"b"}
    assert shard.bitmap() == b"\x02\x01"
    data = dagpb.decode_unixfs(hamt.shard_data(shard.bitmap()))
    assert (data.kind, data.data, data.hash_type, data.fanout) == (dagpb.UNIXFS_HAMT_SHARD, b"\x02\x01", 0x22, 256)
    assert hamt.shard_data_length(2) == len(hamt.shard_data(b"\x02\x01"))
