"""Shared by the CommP tests: payload builders for the vector files and an independent, naive CommP."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


def build_shared(spec: str) -> bytes:
    """commp.json's data language: zeros(N), fill(HEX, N), concat(part, part, ...)."""
    spec = spec.strip()
    if spec.startswith("concat("):
        return b"".join(build_shared(p) for p in re.findall(r"\w+\([^()]*\)", spec[len("concat("):-1]))
    m = re.fullmatch(r"zeros\((\d+)\)", spec)
    if m:
        return bytes(int(m.group(1)))
    m = re.fullmatch(r"fill\(([0-9a-fA-F]{2}),\s*(\d+)\)", spec)
    if m:
        return bytes([int(m.group(1), 16)]) * int(m.group(2))
    raise ValueError(f"unknown data spec {spec!r}")


def build_generated(spec: dict) -> bytes:
    """commp_generated.json's data: shake128 (first size bytes of SHAKE128(seed)), zeros, fill."""
    if spec["kind"] == "shake128":
        return hashlib.shake_128(spec["seed"].encode()).digest(spec["size"])
    if spec["kind"] == "zeros":
        return bytes(spec["size"])
    if spec["kind"] == "fill":
        return bytes([spec["byte"]]) * spec["size"]
    raise ValueError(spec)


def naive_fr32(quad: bytes) -> bytes:
    """Bit by bit: 1016 little-endian bits -> four 254-bit values in 32-byte little-endian slots."""
    out = bytearray(128)
    for j in range(4):
        for b in range(254):
            i = 254 * j + b
            if quad[i >> 3] >> (i & 7) & 1:
                out[32 * j + (b >> 3)] |= 1 << (b & 7)
    return bytes(out)


def naive_root(payload: bytes, min_leaves: int = 4) -> tuple[bytes, int]:
    """(root, padded piece size): the whole tree in memory, zero leaves up to a power of two."""
    padded_len = -(-max(len(payload), 1) // 127) * 127
    data = payload + bytes(padded_len - len(payload))
    leaves = []
    for off in range(0, len(data), 127):
        q = naive_fr32(data[off:off + 127])
        leaves += [q[i:i + 32] for i in range(0, 128, 32)]
    n = max(min_leaves, 4)
    while n < len(leaves):
        n *= 2
    leaves += [bytes(32)] * (n - len(leaves))
    while len(leaves) > 1:
        nxt = []
        for i in range(0, len(leaves), 2):
            h = bytearray(hashlib.sha256(leaves[i] + leaves[i + 1]).digest())
            h[31] &= 0x3F
            nxt.append(bytes(h))
        leaves = nxt
    return leaves[0], n * 32
