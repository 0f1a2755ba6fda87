"""UnixFS HAMT-sharded directories: murmur3-x64-64 name hashing and the shard trie (fanout 256).

The trie is the unique minimal one for a set of names: a name sits in the bucket given by the next 8 bits of its
hash (most significant first); a sub-shard exists only where two or more names share a bucket. That is what
boxo's hamt and the JS `hamt-sharding` Bucket build for an insert-only directory, whatever the insert order.
"""
from __future__ import annotations

import struct

from ptolemy_tui.core import dagpb
from ptolemy_tui.core.multiformats import HASH_MURMUR3_X64_64

FANOUT = 256
HASH_TYPE = HASH_MURMUR3_X64_64
MAX_DEPTH = 8  # 64 hash bits / 8 bits per level

_M = 0xFFFFFFFFFFFFFFFF
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F
_LABELS = [b"%02X" % i for i in range(FANOUT)]


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M
    return k ^ (k >> 33)


def murmur3_x64_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    """MurmurHash3_x64_128 as (h1, h2). Pure Python: only directories past the HAMT threshold need it."""
    h1 = h2 = seed
    n = len(data)
    nblocks = n // 16
    for i in range(nblocks):
        k1, k2 = struct.unpack_from("<QQ", data, i * 16)
        k1 = (k1 * _C1) & _M
        k1 = ((k1 << 31) | (k1 >> 33)) & _M
        h1 ^= (k1 * _C2) & _M
        h1 = ((h1 << 27) | (h1 >> 37)) & _M
        h1 = ((h1 + h2) * 5 + 0x52DCE729) & _M
        k2 = (k2 * _C2) & _M
        k2 = ((k2 << 33) | (k2 >> 31)) & _M
        h2 ^= (k2 * _C1) & _M
        h2 = ((h2 << 31) | (h2 >> 33)) & _M
        h2 = ((h2 + h1) * 5 + 0x38495AB5) & _M
    tail = data[nblocks * 16:]
    if len(tail) > 8:
        k2 = (int.from_bytes(tail[8:], "little") * _C2) & _M
        k2 = ((k2 << 33) | (k2 >> 31)) & _M
        h2 ^= (k2 * _C1) & _M
    if tail:
        k1 = (int.from_bytes(tail[:8], "little") * _C1) & _M
        k1 = ((k1 << 31) | (k1 >> 33)) & _M
        h1 ^= (k1 * _C2) & _M
    h1 ^= n
    h2 ^= n
    h1 = (h1 + h2) & _M
    h2 = (h2 + h1) & _M
    h1 = _fmix(h1)
    h2 = _fmix(h2)
    h1 = (h1 + h2) & _M
    h2 = (h2 + h1) & _M
    return h1, h2


def name_hash(name: bytes) -> int:
    """The 64-bit HAMT hash of a name: murmur3-x64-64 = h1 of the 128-bit digest (read big-endian)."""
    return murmur3_x64_128(name)[0]


def bucket(h: int, depth: int) -> int:
    if depth >= MAX_DEPTH:
        # Needs a 64-bit murmur3 collision between two names of one directory: never seen in practice.
        raise ValueError("HAMT hash bits exhausted (two names with equal 64-bit murmur3 hashes)")
    return (h >> (56 - 8 * depth)) & 0xFF


def label(index: int) -> bytes:
    return _LABELS[index]


class Shard:
    """One HAMT node: bucket -> name (bytes) or sub-Shard."""

    __slots__ = ("depth", "children")

    def __init__(self, depth: int = 0):
        self.depth = depth
        self.children: dict[int, bytes | Shard] = {}

    def ordered(self) -> list[tuple[int, bytes | "Shard"]]:
        return sorted(self.children.items(), key=lambda kv: kv[0])

    def bitmap(self) -> bytes:
        """The bitfield, big-endian with leading zero bytes stripped (at least one byte)."""
        value = 0
        for index in self.children:
            value |= 1 << index
        return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def insert(root: Shard, name: bytes, h: int, hashes: dict[bytes, int]) -> None:
    """Insert `name` (hash h) into the trie; `hashes` gives the hash of names already in it."""
    shard = root
    while True:
        index = bucket(h, shard.depth)
        current = shard.children.get(index)
        if current is None:
            shard.children[index] = name
            return
        if isinstance(current, Shard):
            shard = current
            continue
        if current == name:
            raise ValueError(f"duplicate name in HAMT directory: {name!r}")
        # Collision: the occupying name moves down into a new sub-shard together with the new one.
        sub = Shard(shard.depth + 1)
        sub.children[bucket(hashes[current], sub.depth)] = current
        shard.children[index] = sub
        shard = sub


def build_trie(names) -> Shard:
    hashes: dict[bytes, int] = {}
    root = Shard(0)
    for name in names:
        h = name_hash(name)
        insert(root, name, h, hashes)
        hashes[name] = h
    return root


def shard_data(bitmap: bytes) -> bytes:
    """UnixFS Data of a HAMT node."""
    return dagpb.unixfs_data(dagpb.UNIXFS_HAMT_SHARD, data=bitmap, hash_type=HASH_TYPE, fanout=FANOUT)


def shard_data_length(bitmap_len: int) -> int:
    return len(shard_data(b"\x01" * bitmap_len))
