"""SHA-256 of consecutive equal-size chunks of one buffer (the raw leaves of a UnixFS file), in one call.

    hash_chunks = chunk_hasher()                 # engine from PTOLEMY_SHA256_ENGINE, else the fastest here
    digests = hash_chunks(buf, 262144)           # 32 bytes per chunk, concatenated; the last chunk may be short

Engines: ``c-avx512`` (the ``_commp`` kernel: sixteen chunks at once, one per 32-bit lane of a zmm register,
about twice SHA-NI on this Xeon), ``c-sha-ni``, ``c-portable``, and ``python`` (hashlib, chunk by chunk).
The C kernel releases the GIL for the whole call. Every engine gives the same bytes; ``auto`` picks the
kernel's fastest path when it was built, else Python. ``PTOLEMY_SHA256_ENGINE`` (an engine name) overrides
``auto``, e.g. ``python`` to take the C kernel out.
"""
from __future__ import annotations

import functools
import hashlib
from typing import Callable

from ptolemy_tui.settings import current

try:  # the optional compiled kernel (shared with CommP)
    from ptolemy_tui.core import _commp as _ckernel
except ImportError:  # pragma: no cover - exercised where the extension did not compile
    _ckernel = None
if _ckernel is not None and not hasattr(_ckernel, "sha256_chunks"):  # pragma: no cover - a stale build
    _ckernel = None

ENGINE_ENV = "PTOLEMY_SHA256_ENGINE"

HashChunks = Callable[[object, int], bytes]


def hash_chunks_python(data, chunk_size: int) -> bytes:
    """hashlib, one chunk at a time (it releases the GIL for each chunk over 2 KiB)."""
    view = memoryview(data)
    sha256 = hashlib.sha256
    return b"".join([sha256(view[s:s + chunk_size]).digest() for s in range(0, len(view), chunk_size)])


def available_engines() -> list[str]:
    """Every engine that runs here, fastest first."""
    impls = tuple(_ckernel.impls()) if _ckernel is not None else ()
    # sha-ni-x4 interleaves CommP's tree pairs; a chunk's blocks are one chain, so here it is plain SHA-NI
    order = {"avx512": 0, "sha-ni": 1, "portable": 2}
    return [f"c-{impl}" for impl in sorted((i for i in impls if i in order), key=order.get)] + ["python"]


def resolve(engine: str = "auto") -> tuple[str, HashChunks]:
    """(engine name, function) for an engine choice; ``auto`` reads PTOLEMY_SHA256_ENGINE first."""
    choice = engine.strip().lower()
    if choice == "auto":
        choice = current().sha256_engine
    engines = available_engines()
    if choice in ("auto", "c"):
        choice = engines[0] if choice == "auto" or len(engines) > 1 else choice
    if choice == "python":
        return "python", hash_chunks_python
    if choice not in engines:
        raise ValueError(f"SHA-256 engine {choice!r} is not available here (use one of {', '.join(engines)})")
    return choice, functools.partial(_ckernel.sha256_chunks, impl=choice[2:])


def chunk_hasher(engine: str = "auto") -> HashChunks:
    return resolve(engine)[1]
