"""Filecoin piece commitment (CommP) of a byte stream, computed as the bytes go by.

    h = CommP(deferred_prefix=59, threads=2)    # the CAR header (59 bytes) comes last
    h.update(chunk) ...                         # every byte after the header, in order
    h.set_prefix(header)                        # the stream's first 59 bytes, now known
    result = h.digest()                         # CommPResult: commitment, sizes, piece CIDs v1 and v2

How it works (FORMATS.md, "CommP"): the payload is cut into 127-byte quads, each Fr32-padded to 128 bytes =
four 32-byte leaves; parents are SHA-256(left ‖ right) with the last byte ``&= 0x3f``; the tree is padded with
all-zero subtrees up to a power of two. This module keeps the streaming state; an *engine* computes roots of
complete aligned subtrees of ``2**k`` quads:

- ``c-avx512`` / ``c-sha-ni-x4`` / ``c-sha-ni`` / ``c-portable``: the C kernel ``_commp``, which releases the
  GIL: sixteen pairs per AVX-512 instruction stream, four or two interleaved pairs on the SHA instructions
  (SHA-NI), or portable C;
- ``python``: ``commp_py``, hashlib only, identical answers.

``engine="auto"`` (and ``"c"``) takes the C path that ``commp_calibration`` measured fastest on this machine
(cached per CPU and kernel build), or Python where the kernel was not built; the environment variable
``PTOLEMY_COMMP_ENGINE`` (any engine name, e.g. ``c-sha-ni`` or ``python``) overrides ``auto``.
``engine_reason()`` says why.

Streaming: bytes are gathered into batches of ``2**15`` quads (about 4 MB) aligned on the quad grid; each
batch is one subtree root pushed on a per-level carry stack. With ``threads=N>1`` batches are hashed by N
worker threads (at most 2·N batches in flight) and their roots pushed in order, so one stream uses N cores.

Deferred prefix: the first ``deferred_prefix`` bytes arrive last. The quads they touch (K = ceil(P/127), the
left edge) are unknown until then; the carry stack holds a placeholder for them, and every real subtree root
that would have been combined with a placeholder is kept (one per level: O(log n) hashes). ``digest()``
hashes the K prefix quads and replays those combinations. Nothing of the stream is buffered or re-read.
"""
from __future__ import annotations

import functools
import hashlib
import io
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable

from ptolemy_tui.core import commp_calibration, commp_py
from ptolemy_tui.settings import current
from ptolemy_tui.core.multiformats import (
    CID,
    CODEC_FIL_COMMITMENT_UNSEALED,
    CODEC_RAW,
    HASH_FR32_SHA256_TRUNC254_PADBINTREE,
    HASH_SHA2_256_TRUNC254_PADDED,
    encode_varint,
)

try:  # the optional compiled kernel
    from ptolemy_tui.core import _commp as _ckernel
except ImportError:  # pragma: no cover - exercised where the extension did not compile
    _ckernel = None

ENGINE_ENV = "PTOLEMY_COMMP_ENGINE"
ENGINE_CHOICES = ("auto", "c", "c-avx512", "c-sha-ni-x4", "c-sha-ni", "c-portable", "python")

QUAD = 127
MIN_PAYLOAD = 65
MAX_PADDED_PIECE = 64 << 30
MAX_PAYLOAD = MAX_PADDED_PIECE * 127 // 128
BATCH_LOG2 = 15  # 2**15 quads = 4,161,536 payload bytes per batch
BATCH_BYTES = QUAD << BATCH_LOG2
READ_SIZE = BATCH_BYTES * 2


class CommPError(ValueError):
    """CommP undefined or misused: payload < 65 bytes, payload too large, a bad prefix, a bad option."""


# ---------------------------------------------------------------- engines


def _c_impls() -> tuple[str, ...]:
    """The C kernel's SHA-256 implementations on this CPU, fastest first (e.g. avx512, sha-ni, portable)."""
    return tuple(_ckernel.impls()) if _ckernel is not None else ()


def _resolve(engine: str) -> tuple[str, Callable[[object, int], bytes]]:
    """(engine name, root function) for an engine choice."""
    name, _reason = _choose(engine)
    if name == "python":
        return "python", commp_py.root
    return name, functools.partial(_ckernel.root, impl=name[2:])


def _root_iov_fn(name: str):
    """root_iov(parts, offset, k) for an engine: the C kernel reads the parts in place; Python joins them."""
    if name == "python" or _ckernel is None or not hasattr(_ckernel, "root_iov"):
        def joined(parts, offset, k, _root=commp_py.root if name == "python" else _resolve(name)[1]):
            data = b"".join(parts)
            return _root(memoryview(data)[offset:offset + (QUAD << k)], k)
        return joined
    return functools.partial(_ckernel.root_iov, impl=name[2:])


def _choose(engine: str) -> tuple[str, str]:
    """(engine name, why): forced by the argument or PTOLEMY_COMMP_ENGINE, else calibrated on this machine."""
    choice, why = engine, f"asked for {engine}"
    if choice == "auto":
        env = current().commp_engine
        if env and env != "auto":
            if env not in ENGINE_CHOICES:
                raise CommPError(f"{ENGINE_ENV}={env!r} is not an engine: use one of {', '.join(ENGINE_CHOICES)}")
            choice, why = env, f"forced by {ENGINE_ENV}={env}"
    if choice in ("auto", "c"):
        if _ckernel is None:
            if choice == "c":
                raise CommPError("the C CommP kernel is not built here (no compiler at install time?): "
                                 "use --engine python")
            return "python", "the C kernel is not built here"
        picked = commp_calibration.chosen(_ckernel)
        return picked.engine, (picked.reason if why.startswith("asked") else f"{why}; {picked.reason}")
    if choice == "python":
        return "python", why
    if choice.startswith("c-") and choice in ENGINE_CHOICES:
        if _ckernel is None:
            raise CommPError("the C CommP kernel is not built here (no compiler at install time?): use --engine python")
        impls = _c_impls()
        if choice[2:] not in impls:
            raise CommPError(f"engine {choice} does not run on this CPU (available: "
                             f"{', '.join('c-' + i for i in impls)}, python)")
        return choice, why
    raise CommPError(f"unknown CommP engine {engine!r}: use one of {', '.join(ENGINE_CHOICES)}")


def engine_name(engine: str = "auto") -> str:
    """The engine that ``engine`` resolves to here: "c-avx512", "c-sha-ni-x4", "c-sha-ni", "c-portable", "python"."""
    try:
        return _choose(engine)[0]
    except CommPError as exc:
        return f"unavailable ({exc})"


def engine_reason(engine: str = "auto") -> str:
    """Why ``engine`` resolves as it does here: the calibrated figures, or what forced it."""
    try:
        return _choose(engine)[1]
    except CommPError as exc:
        return str(exc)


def calibrated_figures() -> dict[str, float]:
    """MB of payload per CPU-second of each C path, as calibrated on this machine ({} without the kernel)."""
    return dict(commp_calibration.chosen(_ckernel).figures) if _ckernel is not None else {}


def available_engines() -> list[str]:
    """Every engine that runs here (C paths in the kernel's static order; ``auto`` measures which is fastest)."""
    return [f"c-{impl}" for impl in _c_impls()] + ["python"]


# ---------------------------------------------------------------- tree helpers


def _pair(left: bytes, right: bytes) -> bytes:
    digest = bytearray(hashlib.sha256(left + right).digest())
    digest[31] &= 0x3F
    return bytes(digest)


@functools.lru_cache(maxsize=None)
def zero_root(leaf_level: int) -> bytes:
    """Root of an all-zero subtree of 2**leaf_level 32-byte leaves (the padding of every piece)."""
    if leaf_level == 0:
        return bytes(32)
    below = zero_root(leaf_level - 1)
    return _pair(below, below)


def _blocks(q0: int, nquads: int):
    """The aligned power-of-two blocks covering quads [q0, q0 + nquads): (offset in quads, log2 size)."""
    q, end = q0, q0 + nquads
    while q < end:
        k = (q & -q).bit_length() - 1 if q else 63
        while (1 << k) > end - q:
            k -= 1
        yield q - q0, k
        q += 1 << k


def _roots(root_fn, data, q0: int, nquads: int) -> list[tuple[int, bytes]]:
    """Roots of the aligned blocks of quads [q0, q0 + nquads) whose bytes are data: [(quad level, root)]."""
    mv = memoryview(data)
    return [(k, root_fn(mv[off * QUAD : (off + (1 << k)) * QUAD], k)) for off, k in _blocks(q0, nquads)]


def _roots_iov(root_iov, parts: list, q0: int, nquads: int) -> list[tuple[int, bytes]]:
    """_roots() over the concatenation of parts (read in place)."""
    return [(k, root_iov(parts, off * QUAD, k)) for off, k in _blocks(q0, nquads)]


def _byte_view(data) -> memoryview:
    mv = memoryview(data)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    return mv


def piece_cid_v1(commitment: bytes) -> str:
    return str(CID.v1(CODEC_FIL_COMMITMENT_UNSEALED, HASH_SHA2_256_TRUNC254_PADDED, commitment))


def piece_cid_v2(commitment: bytes, payload_size: int, padded_piece_size: int) -> str:
    height = padded_piece_size.bit_length() - 1 - 5  # log2(padded / 32)
    padding = padded_piece_size * 127 // 128 - payload_size
    digest = encode_varint(padding) + bytes([height]) + commitment
    return str(CID.v1(CODEC_RAW, HASH_FR32_SHA256_TRUNC254_PADBINTREE, digest))


@dataclass(frozen=True)
class CommPResult:
    commitment: bytes
    payload_size: int
    padded_piece_size: int
    unpadded_piece_size: int
    piece_cid_v1: str
    piece_cid_v2: str | None  # None only below MIN_PAYLOAD; 65–126 bytes get one, as @web3-storage/data-segment gives

    def to_json(self) -> dict:
        return {
            "commp": self.piece_cid_v1,
            "piece_cid_v2": self.piece_cid_v2,
            "payload_size": self.payload_size,
            "unpadded_piece_size": self.unpadded_piece_size,
            "padded_piece_size": self.padded_piece_size,
        }

    def stream_commp_lines(self) -> list[str]:
        """The lines go-fil-commp-hashhash's stream-commp prints."""
        return [
            f"CommPCid: {self.piece_cid_v1}",
            "Payload:        % 12d bytes" % self.payload_size,
            "Unpadded piece: % 12d bytes" % self.unpadded_piece_size,
            "Padded piece:   % 12d bytes" % self.padded_piece_size,
        ]


def _make_result(commitment: bytes, payload_size: int, padded: int) -> CommPResult:
    return CommPResult(
        commitment=commitment,
        payload_size=payload_size,
        padded_piece_size=padded,
        unpadded_piece_size=padded * 127 // 128,
        piece_cid_v1=piece_cid_v1(commitment),
        piece_cid_v2=piece_cid_v2(commitment, payload_size, padded) if payload_size >= MIN_PAYLOAD else None,
    )


class _Placeholder:
    """A subtree that covers the deferred prefix: its value is known only at digest time."""

    def __repr__(self) -> str:
        return "<prefix subtree>"


_PH = _Placeholder()


# ---------------------------------------------------------------- the hasher


class CommP:
    """Streaming CommP. Not thread-safe: one producer calls update / set_prefix / digest."""

    def __init__(self, *, deferred_prefix: int = 0, threads: int = 1, engine: str = "auto",
                 min_padded_piece: int = 0) -> None:
        if not isinstance(deferred_prefix, int) or deferred_prefix < 0:
            raise CommPError(f"deferred_prefix must be a byte count >= 0, not {deferred_prefix!r}")
        if deferred_prefix > MAX_PAYLOAD:
            raise CommPError(f"deferred_prefix {deferred_prefix} exceeds the largest payload ({MAX_PAYLOAD} bytes)")
        if not isinstance(threads, int) or threads < 1:
            raise CommPError(f"threads must be >= 1, not {threads!r}")
        if min_padded_piece:
            if (min_padded_piece < 128 or min_padded_piece & (min_padded_piece - 1)
                    or min_padded_piece > MAX_PADDED_PIECE):
                raise CommPError(f"padded piece size must be a power of two from 128 B to 64 GiB, "
                                 f"not {min_padded_piece} bytes")
        self.engine, self._root = _resolve(engine)
        self._root_iov = _root_iov_fn(self.engine)
        self.threads = 1 if self.engine == "python" else threads  # hashlib holds the GIL: no gain
        self._min_padded = min_padded_piece
        self._prefix_len = deferred_prefix
        self._prefix_quads = -(-deferred_prefix // QUAD)
        self._head_need = self._prefix_quads * QUAD - deferred_prefix  # stream bytes inside the prefix quads
        self._head = bytearray()
        self._prefix: bytes | None = None
        self._size = deferred_prefix  # payload bytes so far, the prefix included
        self._q = self._prefix_quads  # quad index where self._buf starts
        # Bytes not yet hashed are gathered in a preallocated batch buffer (self._fill of them); full buffers go
        # to the hashing threads and come back to self._spare when hashed, so their pages stay mapped (a fresh
        # bytearray per batch cost mremap growth, page faults and trims: 0.2 CPU-s per GiB).
        self._buf: bytearray | None = None
        self._fill = 0
        self._spare: list[bytearray] = []
        self._slots: dict[int, object] = {}  # quad level -> root (bytes) or _PH
        for level in range(self._prefix_quads.bit_length()):
            if self._prefix_quads >> level & 1:
                self._slots[level] = _PH
        self._events: list[tuple[int, bytes]] = []  # (level, right sibling of a placeholder), in order
        self._pending: deque = deque()
        self._borrowed: deque = deque()  # [hashed?, on_done] per update_borrowed() call, in call order
        self._borrowed_lock = threading.Lock()
        self._pool = None
        self._result: CommPResult | None = None

    # -- streaming

    def _batch_bytes(self) -> int:
        end = ((self._q >> BATCH_LOG2) + 1) << BATCH_LOG2
        return (end - self._q) * QUAD

    def _take_buffer(self) -> bytearray:
        try:
            return self._spare.pop()  # list.pop/append are atomic: hashing threads append
        except IndexError:
            return bytearray(BATCH_BYTES)

    def _push(self, level: int, node: object) -> None:
        slots = self._slots
        while level in slots:
            left = slots.pop(level)
            if left is _PH:
                if node is not _PH:
                    self._events.append((level, node))  # type: ignore[arg-type]
                    node = _PH
            else:
                node = _pair(left, node)  # type: ignore[arg-type]
            level += 1
        slots[level] = node

    def _collect(self, block: bool) -> None:
        pending = self._pending
        while pending and (block or pending[0].done()):
            for level, node in pending.popleft().result():
                self._push(level, node)

    def _run(self, fn, args: tuple, nquads: int, done=None) -> None:
        """Hash nquads quads from self._q with fn(*args, q0, nquads) -> roots; then done() (any thread)."""
        q0 = self._q
        self._q += nquads
        if self.threads == 1:
            try:
                roots = fn(*args, q0, nquads)
            finally:
                if done is not None:
                    done()
            for level, node in roots:
                self._push(level, node)
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="commp")
        try:
            fut = self._pool.submit(fn, *args, q0, nquads)
        except BaseException:
            if done is not None:
                done()
            raise
        if done is not None:
            fut.add_done_callback(lambda _f: done())  # also on cancel: exactly once
        self._pending.append(fut)
        self._collect(block=False)
        while len(self._pending) > 2 * self.threads:
            for level, node in self._pending.popleft().result():
                self._push(level, node)

    def _submit_buffer(self, buf: bytearray, nbytes: int) -> None:
        """Hash a full batch buffer, then recycle it."""
        spare = self._spare
        self._run(_roots, (self._root, memoryview(buf)[:nbytes]), nbytes // QUAD, lambda: spare.append(buf))

    def _check_update(self, n: int) -> None:
        if self._result is not None:
            raise CommPError("update() after digest()")
        if self._size + n > MAX_PAYLOAD:
            raise CommPError(f"payload exceeds the largest piece: more than {MAX_PAYLOAD} bytes (64 GiB·127/128)")

    def _take_head(self, mv: memoryview) -> memoryview:
        """The part of mv that falls in the deferred prefix's quads is kept aside (under 127 bytes)."""
        if len(self._head) < self._head_need:
            take = min(self._head_need - len(self._head), len(mv))
            self._head += mv[:take]
            mv = mv[take:]
        return mv

    def _append(self, mv: memoryview) -> None:
        """Copy mv (shorter than what the current batch still needs) into the batch buffer."""
        if self._buf is None:
            self._buf = self._take_buffer()
        self._buf[self._fill:self._fill + len(mv)] = mv
        self._fill += len(mv)

    def update(self, data) -> None:
        """Add the next bytes of the stream. The caller may reuse its buffer as soon as this returns."""
        mv = _byte_view(data)
        n = len(mv)
        if not n:
            return
        self._check_update(n)
        self._size += n
        immutable = type(mv.obj) is bytes
        mv = self._take_head(mv)
        if not len(mv):
            return
        if self._fill:
            want = self._batch_bytes() - self._fill
            self._append(mv[:want])
            mv = mv[want:]
            if self._fill == self._batch_bytes():
                full, nbytes, self._buf, self._fill = self._buf, self._fill, None, 0
                self._submit_buffer(full, nbytes)
        while len(mv) >= self._batch_bytes():
            size = self._batch_bytes()
            if self.threads == 1 or immutable:  # hashed before we return, or nobody can change it: no copy
                self._run(_roots, (self._root, mv[:size]), size // QUAD)
            else:
                buf = self._take_buffer()
                buf[:size] = mv[:size]
                self._submit_buffer(buf, size)
            mv = mv[size:]
        if len(mv):
            self._append(mv)

    def _finish_borrowed(self, entry: list) -> None:
        """Mark one update_borrowed() call hashed; run the on_done of every call hashed so far, in call order.

        Order matters to the caller: a buffer it recycles after call N (a CAR frame buffer) may also hold
        segments of call N - 1, which another thread may still be hashing.
        """
        with self._borrowed_lock:  # the callbacks run under the lock: two threads never reorder them
            entry[0] = True
            borrowed = self._borrowed
            while borrowed and borrowed[0][0]:
                borrowed.popleft()[1]()

    def update_borrowed(self, segments, on_done: Callable[[], None]) -> None:
        """Add the next bytes of the stream, segment after segment, without copying them.

        The hashing threads read the segments where they are; ``on_done()`` runs (in any thread, exactly once,
        also on errors) when the hasher no longer needs them, and only then may the caller reuse their buffers.
        Only what does not fill a whole 127-byte quad at the end is copied (and the deferred prefix's quads).
        The on_done callbacks of successive calls run in call order.
        """
        try:
            views = [_byte_view(seg) for seg in segments]
            n = sum(len(v) for v in views)
            self._check_update(n)
        except BaseException:
            on_done()
            raise
        self._size += n
        parts: list = []
        recycle = None
        if self._fill:  # bytes left over by earlier calls come first
            if self._fill <= 65536:
                parts.append(bytes(self._buf[:self._fill]))  # type: ignore[index]
            else:
                recycle, self._buf = self._buf, None
                parts.append(memoryview(recycle)[:self._fill])
            self._fill = 0
        for v in views:
            if len(self._head) < self._head_need:
                v = self._take_head(v)
            if len(v):
                parts.append(v)
        total = sum(len(p) for p in parts)
        nquads = total // QUAD
        tail = total - nquads * QUAD
        # the last `tail` bytes wait for the next call (copied: under 127 bytes)
        cut = []
        while tail:
            last = parts[-1]
            if len(last) <= tail:
                cut.append(parts.pop())
                tail -= len(last)
            else:
                cut.append(last[len(last) - tail:])
                parts[-1] = last[:len(last) - tail]
                tail = 0
        for piece in reversed(cut):
            self._append(memoryview(piece))
        spare = self._spare
        entry = [False, on_done]
        with self._borrowed_lock:
            self._borrowed.append(entry)

        def done() -> None:
            if recycle is not None:
                spare.append(recycle)
            self._finish_borrowed(entry)

        if not nquads:
            done()
            return
        self._run(_roots_iov, (self._root_iov, parts), nquads, done)

    def set_prefix(self, data) -> None:
        """Supply the stream's first deferred_prefix bytes (any time before digest())."""
        if self._result is not None:
            raise CommPError("set_prefix() after digest()")
        if not self._prefix_len:
            raise CommPError("set_prefix() on a CommP without deferred_prefix")
        prefix = bytes(data)
        if len(prefix) != self._prefix_len:
            raise CommPError(f"prefix is {len(prefix)} bytes; deferred_prefix is {self._prefix_len}")
        self._prefix = prefix

    def digest(self) -> CommPResult:
        """Finish: the piece commitment, sizes and piece CIDs. Idempotent; no update() afterwards."""
        if self._result is not None:
            return self._result
        if self._prefix_len and self._prefix is None:
            raise CommPError(f"digest() before set_prefix(): the first {self._prefix_len} bytes are missing")
        if self._size < MIN_PAYLOAD:
            raise CommPError(f"payload shorter than {MIN_PAYLOAD} bytes ({self._size}): CommP is undefined")
        try:
            self._collect(block=True)
        finally:
            self.close()
        # the last partial batch, zero-padded to whole quads
        if self._fill:
            nquads = -(-self._fill // QUAD)
            buf = self._buf
            buf[self._fill:nquads * QUAD] = bytes(nquads * QUAD - self._fill)  # type: ignore[index]
            for level, node in _roots(self._root, memoryview(buf)[:nquads * QUAD], self._q, nquads):  # type: ignore
                self._push(level, node)
            self._q += nquads
            self._buf, self._fill = None, 0
        self._spare.clear()
        if self._prefix_quads:
            self._resolve_prefix()
        total_quads = self._q
        target = 1 << (total_quads - 1).bit_length()
        target = max(target, self._min_padded // 128)
        top = target.bit_length() - 1
        acc = None
        for level in range(top):
            node = self._slots.get(level)
            if node is not None:
                acc = _pair(node, zero_root(level + 2)) if acc is None else _pair(node, acc)  # type: ignore
            elif acc is not None:
                acc = _pair(acc, zero_root(level + 2))
        commitment = acc if acc is not None else self._slots[top]
        self._result = _make_result(commitment, self._size, target * 128)  # type: ignore[arg-type]
        return self._result

    def _resolve_prefix(self) -> None:
        """Replace the placeholders by real roots: hash the prefix quads and replay the kept siblings."""
        k = self._prefix_quads
        data = self._prefix + bytes(self._head)  # type: ignore[operator]
        data += bytes(k * QUAD - len(data))
        replay: dict[int, bytes] = {}

        def push(level: int, node: bytes) -> None:
            while level in replay:
                node = _pair(replay.pop(level), node)
                level += 1
            replay[level] = node

        for level, node in _roots(self._root, data, 0, k):
            push(level, node)
        for level, node in self._events:
            push(level, node)
        holes = sorted(level for level, node in self._slots.items() if node is _PH)
        if holes != sorted(replay):  # pragma: no cover - an internal invariant
            raise AssertionError(f"prefix replay mismatch: {holes} != {sorted(replay)}")
        self._slots.update(replay)
        self._events.clear()

    def close(self) -> None:
        """Stop the worker threads (digest() does this; call it when abandoning a hasher)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            for fut in self._pending:
                fut.cancel()
            pool.shutdown(wait=True)

    def __enter__(self) -> "CommP":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def commp_of_stream(stream: io.RawIOBase | io.BufferedIOBase, *, threads: int = 1, engine: str = "auto",
                    min_padded_piece: int = 0) -> CommPResult:
    """CommP of everything a binary stream yields."""
    hasher = CommP(threads=threads, engine=engine, min_padded_piece=min_padded_piece)
    try:
        if hasher.threads == 1 and hasattr(stream, "readinto"):
            buf = bytearray(READ_SIZE)  # one reused buffer: hashed synchronously, never copied
            view = memoryview(buf)
            while True:
                n = stream.readinto(buf)
                if not n:
                    break
                hasher.update(view[:n])
        else:
            while True:
                chunk = stream.read(READ_SIZE)  # fresh bytes: the worker threads hash them without a copy
                if not chunk:
                    break
                hasher.update(chunk)
        return hasher.digest()
    finally:
        hasher.close()


def commp_of_file(path, *, threads: int = 1, engine: str = "auto", min_padded_piece: int = 0) -> CommPResult:
    """CommP of a file's bytes."""
    with open(path, "rb", buffering=0) as f:
        return commp_of_stream(f, threads=threads, engine=engine, min_padded_piece=min_padded_piece)


def zero_piece_commitment(padded_piece_size: int) -> bytes:
    """The commitment of an all-zero piece of this padded size (a power of two >= 128)."""
    if padded_piece_size < 128 or padded_piece_size & (padded_piece_size - 1):
        raise CommPError(f"padded piece size must be a power of two >= 128, not {padded_piece_size}")
    return zero_root(padded_piece_size.bit_length() - 1 - 5)
