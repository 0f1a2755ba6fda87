"""The pure-Python CommP engine: the same answers as the C kernel (``_commp``), with hashlib only.

Interface shared with the C kernel (``commp.py`` drives either):

- ``root(data, k) -> bytes``: the 32-byte root of the tree over ``2**k`` quads (``127 << k`` payload bytes).
- ``hash_pairs(data) -> bytes``: each 64-byte block hashed to 32 bytes (SHA-256, last byte ``&= 0x3f``).
- ``fr32(data) -> bytes``: 127-byte quads expanded to 128 bytes each.

Speed comes from keeping per-leaf Python work small:

- Fr32 works on a whole chunk at once: one zero byte is appended to every 127-byte quad (a single
  ``bytes.join``), the chunk becomes one big integer, and four shift-and-mask operations move the four 254-bit
  values of every quad to their 256-bit slots (value j of a quad moves left by 2·j bits; the zero byte absorbs
  what the shifts carry past the quad).
- Each tree level is one list comprehension of ``sha256(64 bytes).digest()``; the joined level is masked with
  one ``bytearray.translate`` over its every 32nd byte.
"""
from __future__ import annotations

from hashlib import sha256

CHUNK_LOG2 = 10  # 1024 quads (127 KiB of payload) per Fr32 pass

_MASK_TOP2 = bytes(b & 0x3F for b in range(256))
_ELEM = (1 << 254) - 1
_mask_cache: dict[int, tuple[int, int, int, int]] = {}


def _masks(nquads: int) -> tuple[int, int, int, int]:
    """For nquads 1024-bit slots: the four 254-bit fields at 0, 256, 512 and 768 in every slot."""
    masks = _mask_cache.get(nquads)
    if masks is None:
        slot = [_ELEM << (256 * j) for j in range(4)]
        masks = tuple(
            int.from_bytes(m.to_bytes(128, "little") * nquads, "little") for m in slot
        )  # type: ignore[assignment]
        if len(_mask_cache) < 64:
            _mask_cache[nquads] = masks  # type: ignore[assignment]
    return masks  # type: ignore[return-value]


def fr32(data) -> bytes:
    """Fr32-pad a whole number of 127-byte quads: 127 bytes in, 128 out, each 32 bytes holding 254 bits."""
    mv = memoryview(data).cast("B")
    n = len(mv)
    if n % 127:
        raise ValueError("fr32(): data must be a multiple of 127 bytes")
    nquads = n // 127
    if not nquads:
        return b""
    spaced = b"\0".join([mv[i : i + 127] for i in range(0, n, 127)]) + b"\0"
    x = int.from_bytes(spaced, "little")
    m0, m1, m2, m3 = _masks(nquads)
    y = (x & m0) | ((x << 2) & m1) | ((x << 4) & m2) | ((x << 6) & m3)
    return y.to_bytes(128 * nquads, "little")


def hash_pairs(data) -> bytes:
    """Hash every 64-byte block of data; each 32-byte output has its two top bits cleared."""
    mv = memoryview(data).cast("B")
    n = len(mv)
    if n % 64:
        raise ValueError("hash_pairs(): data must be a multiple of 64 bytes")
    level = bytearray(b"".join([sha256(mv[i : i + 64]).digest() for i in range(0, n, 64)]))
    level[31::32] = level[31::32].translate(_MASK_TOP2)
    return bytes(level)


def _reduce(level) -> bytes:
    """Reduce a power-of-two number of 32-byte nodes to the root."""
    while len(level) > 32:
        mv = memoryview(level)
        level = bytearray(b"".join([sha256(mv[i : i + 64]).digest() for i in range(0, len(level), 64)]))
        level[31::32] = level[31::32].translate(_MASK_TOP2)
    return bytes(level)


def root(data, k: int) -> bytes:
    """Root of the tree over 2**k quads (data is exactly 127 << k bytes)."""
    mv = memoryview(data).cast("B")
    if k < 0 or len(mv) != 127 << k:
        raise ValueError("root(): data must hold exactly 127 * 2**k bytes")
    if k <= CHUNK_LOG2:
        return _reduce(fr32(mv))
    step = 127 << CHUNK_LOG2
    roots = b"".join([_reduce(fr32(mv[off : off + step])) for off in range(0, len(mv), step)])
    return _reduce(roots)


def sha_ni() -> bool:
    return False
