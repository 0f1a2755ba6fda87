"""CARv1 writer: UnixFS DAG of a list of entries, streamed from the sources into one CAR, one pass.

Block order is go-car's: depth-first post-order (children before parents, the root last), each CID once (first
occurrence wins). The header needs the root, known only at the end, so a same-length placeholder is written
first and patched; every byte after the header also goes to `sink` (the CommP hasher) as it is written, and the
final header is handed to it with `set_prefix`, so the piece CID needs no second read of the CAR.
"""
from __future__ import annotations

import functools
import io
import os
import queue
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable, Iterator

from ptolemy_tui.core import sha256_batch, unixfs
from ptolemy_tui.core.carsize import CARV1_HEADER_LENGTH, predict_car_size  # noqa: F401  (public API here too)
from ptolemy_tui.core.source import Reader, SourceChanged  # noqa: F401  (SourceChanged: public API here too)
from ptolemy_tui.core.source_local import LocalReader
from ptolemy_tui.core.multiformats import CID, CODEC_DAG_PB, HASH_SHA2_256, encode_varint, varint_length
from ptolemy_tui.core.unixfs import SourceEntry  # noqa: F401  (public API)

READ_SIZE = 4 * 1024 * 1024      # source reads: big, into one reused buffer
WRITE_BUFFER = 8 * 1024 * 1024   # CAR writes: batched


def car_header(root: bytes) -> bytes:
    """varint(len) ‖ DAG-CBOR {"roots": [root], "version": 1} (keys in DAG-CBOR order: length, then bytes)."""
    tagged = b"\x00" + root  # CBOR tag 42 holds the CID with a leading multibase-identity zero byte
    body = (b"\xa2\x65roots\x81\xd8\x2a\x58" + bytes((len(tagged),)) + tagged + b"\x67version\x01")
    return encode_varint(len(body)) + body


PLACEHOLDER_ROOT = CID.v1(CODEC_DAG_PB, HASH_SHA2_256, bytes(32)).to_bytes()


@dataclass
class CarResult:
    root_cid: CID
    car_size: int
    block_count: int
    entry_cids: list[tuple[bytes, CID]] = field(default_factory=list)
    source_bytes: int = 0
    duplicate_blocks: int = 0   # blocks skipped because an equal one was already written
    duplicate_bytes: int = 0    # the CAR bytes they would have taken (prediction - car_size)
    payload_size: int = 0       # the CARv1 bytes (car_size less a CARv2 wrapper; equal to it for CARv1)


class _BufferHome(queue.Queue):
    """A queue of reusable buffers of one size that outlives nothing: `retire()` (the end of write_car) moves
    its buffers to the process-wide spares, and so does every later put() (a buffer the CommP hasher gives back
    after write_car returned). The next write_car takes them again: a worker building container after
    container does not fault in 40 MiB of fresh zeroed pages each time."""

    def __init__(self, size: int, count: int):
        super().__init__()
        self.size = size
        self.retired = False
        for buf in _spares.take(size, count):
            super().put(buf)

    def put(self, buf, block=True, timeout=None):  # noqa: D102 - queue.Queue's
        if self.retired:
            _spares.give(buf)
        else:
            super().put(buf, block, timeout)

    def retire(self) -> None:
        self.retired = True
        while True:
            try:
                _spares.give(self.get_nowait())
            except queue.Empty:
                return


class _Spares:
    """Process-wide spare buffers by size (bounded), shared by successive write_car calls."""

    KEEP = 8

    def __init__(self):
        self.lock = threading.Lock()
        self.by_size: dict[int, list[bytearray]] = {}

    def take(self, size: int, count: int) -> list[bytearray]:
        with self.lock:
            have = self.by_size.get(size, [])
            got = have[-count:] if count else []
            del have[len(have) - len(got):]
        return got + [bytearray(size) for _ in range(count - len(got))]

    def give(self, buf: bytearray) -> None:
        with self.lock:
            have = self.by_size.setdefault(len(buf), [])
            if len(have) < self.KEEP:
                have.append(buf)


_spares = _Spares()


class _Output:
    """Writes lists of segments to the CAR and the sink on a background thread, then recycles their buffers.

    Hashing (main thread) and writing into the page cache (this thread; the syscall releases the GIL) overlap,
    which is what gets a big file near the speed of SHA-256 alone. A segment is a range of a frame buffer
    (section headers, small blocks) or a leaf straight from a read buffer (no copy). Items are written in order,
    so a buffer queued for recycling after an item is free once that item is done: frame buffers circulate
    through `free`, read buffers through their reader's queue, and memory stays flat whatever the input size.
    """

    BUFFERS = 3

    def __init__(self, out: BinaryIO, sink):
        self.out = out
        self.sink = sink
        self.free = _BufferHome(WRITE_BUFFER, self.BUFFERS)
        self.full: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.fd = _file_descriptor(out)  # a real file: one writev per item instead of a write per segment
        if self.fd is not None:
            out.flush()  # what out buffered goes first; from here on the writes bypass it
        self.thread = threading.Thread(target=self._run, name="car-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        write = self.out.write
        sink = self.sink
        borrow = getattr(sink, "update_borrowed", None)
        while True:
            item = self.full.get()
            if item is None:
                return
            segments, recycle = item
            handed = False
            try:
                if self.error is None:
                    if self.fd is not None:
                        _writev(self.fd, segments)
                    else:
                        for seg in segments:
                            write(seg)
                    if borrow is not None:
                        # the hasher reads the segments in place; their buffers come back when it is done
                        handed = True
                        borrow(segments, functools.partial(_recycle, segments, recycle))
                    elif sink is not None:
                        for seg in segments:
                            sink.update(seg)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self.error = exc
            finally:
                if not handed:
                    _recycle(segments, recycle)

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, segments: list, recycle: list) -> None:
        """Queue segments for writing; afterwards put each (queue, buffer) of recycle back in its queue."""
        self._check()
        self.full.put((segments, recycle))

    def close(self) -> None:
        self.full.put(None)
        self.thread.join()
        self._check()


def _recycle(segments: list, recycle: list) -> None:
    """Release the views of written segments and put each (queue, buffer) back (any thread, once)."""
    for seg in segments:
        if type(seg) is memoryview:
            seg.release()
    for q, buf in recycle:
        q.put(buf)


def _file_descriptor(out) -> int | None:
    """out's file descriptor when writing to it directly is safe (a regular file), else None."""
    if not isinstance(out, (io.FileIO, io.BufferedWriter, io.BufferedRandom)):
        return None
    try:
        fd = out.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (OSError, ValueError):
        return None


def _writev(fd: int, segments: list) -> None:
    """Write every segment, in order, at fd's offset (os.writev may write less than asked: go on from there)."""
    segs = [memoryview(s) for s in segments]
    i = 0
    while i < len(segs):
        batch = segs[i:i + 1024]  # IOV_MAX
        want = sum(len(s) for s in batch)
        n = os.writev(fd, batch)
        if n == want:
            i += len(batch)
            continue
        while n >= len(segs[i]):
            n -= len(segs[i])
            i += 1
        segs[i] = segs[i][n:]


ZERO_COPY_MIN = 64 * 1024  # leaves at least this big are written from the read buffer, smaller ones copied


class _BlockWriter:
    """Dedups blocks by CID and writes `varint ‖ CID ‖ data` sections in batches.

    Headers and small blocks are copied into a big frame buffer; big leaves (memoryviews of the reader's
    buffer) are written where they are, between two ranges of the frame buffer. `release(q, buf)` (from the
    reader, once a batch is stored) queues what is pending and hands buf back to q after it is written.
    """

    def __init__(self, output: _Output, start: int):
        self.output = output
        self.buf = output.free.get()
        self.view = memoryview(self.buf)
        self.fill = 0
        self.cut = 0              # frame bytes before this are already in `segments` (or written)
        self.segments: list = []  # pending, in CAR order
        self.borrowed = False     # a segment points into the current read buffer
        self.seen: set[bytes] = set()
        self.size = start
        self.blocks = 0
        self.dup_blocks = 0
        self.dup_bytes = 0  # what dedup saved: predict_car_size(...) == car_size + dup_bytes

    def put(self, cid: bytes, data) -> None:
        if cid in self.seen:
            self.dup_blocks += 1
            self.dup_bytes += varint_length(len(cid) + len(data)) + len(cid) + len(data)
            return
        self.seen.add(cid)
        n = len(data)
        head = encode_varint(len(cid) + n) + cid
        total = len(head) + n
        self.blocks += 1
        self.size += total
        if n >= ZERO_COPY_MIN and type(data) is memoryview:
            if self.fill + len(head) > WRITE_BUFFER:
                self._next_frame()
            fill = self.fill
            self.view[fill:fill + len(head)] = head
            self.fill = fill = fill + len(head)
            self.segments.append(self.view[self.cut:fill])
            self.segments.append(data)
            self.cut = fill
            self.borrowed = True
            return
        if self.fill + total > WRITE_BUFFER:
            self._next_frame()
        if total > WRITE_BUFFER:  # only possible with a non-default chunk size: one copy, written alone
            self.segments.append(head + bytes(data))
            return
        fill = self.fill
        self.view[fill:fill + len(head)] = head
        fill += len(head)
        self.view[fill:fill + n] = data
        self.fill = fill + n

    def _cut(self) -> None:
        if self.fill > self.cut:
            self.segments.append(self.view[self.cut:self.fill])
            self.cut = self.fill

    def _next_frame(self) -> None:
        """Queue everything pending and recycle this frame buffer after it; continue in a fresh one."""
        self._cut()
        self.output.submit(self.segments, [(self.output.free, self.buf)])
        self.segments = []
        self.view.release()
        self.buf = self.output.free.get()
        self.view = memoryview(self.buf)
        self.fill = self.cut = 0

    def release(self, q: queue.Queue, buf: bytearray) -> None:
        """The reader is done with buf: hand it back at once, or after the leaves that point into it are written."""
        if not self.borrowed:
            q.put(buf)
            return
        self._cut()
        self.output.submit(self.segments, [(q, buf)])
        self.segments = []
        self.borrowed = False

    def flush(self) -> None:
        """Queue what is pending; the frame buffer comes back after it (it is reused by the next write_car)."""
        self._cut()
        self.output.submit(self.segments, [(self.output.free, self.buf)])
        self.segments = []
        self.view.release()


class _SourceReader:
    """Reads each entry's byte range with big reads into batches of whole chunks.

    Buffers circulate through `free`: while the caller hashes and stores batch k, the next read (batch k+1) runs
    on the helper thread, so reading overlaps hashing; a stored batch goes back through `release` (the block
    writer returns it once its leaves are written). The first batch of a file is read inline (small files are
    one batch and gain nothing from a hand-off).
    """

    BUFFERS = 4

    def __init__(self, before_read, on_progress, pool: ThreadPoolExecutor | None = None, release=None,
                 open_reader=None, after_read=None):
        self.before_read = before_read
        self.after_read = after_read
        self.open_reader = open_reader or _open_local
        self.on_progress = on_progress
        self.pool = pool
        self.release = release if release is not None else (lambda q, buf: q.put(buf))
        self.size = READ_SIZE
        self.free = _BufferHome(READ_SIZE, self.BUFFERS)
        self.total = 0

    def _get(self, size: int) -> bytearray:
        buf = self.free.get()
        if len(buf) < size:  # a chunk size above READ_SIZE (tests): this buffer grows for good
            buf = bytearray(size)
        return buf

    def __call__(self, entry: SourceEntry, chunk_size: int) -> Iterator[memoryview]:
        if self.before_read is not None:
            self.before_read(entry)
        if entry.length == 0:
            if self.after_read is not None:
                self.after_read(entry)
            return
        if entry.source is None:
            raise ValueError(f"file entry {entry.dag_path!r} has bytes to read but no source")
        batch = max(chunk_size, READ_SIZE // chunk_size * chunk_size)
        src = self.open_reader(entry)
        pending = None
        buf = nbuf = None
        try:
            pos = entry.offset
            end = entry.offset + entry.length
            want = min(batch, end - pos)
            buf = self._get(want)
            self._fill(src, memoryview(buf), pos, want, entry)
            while True:
                nxt = pos + want
                next_want = min(batch, end - nxt)
                if next_want and self.pool is not None:
                    nbuf = self._get(next_want)
                    pending = self.pool.submit(self._fill, src, memoryview(nbuf), nxt, next_want, entry)
                view = memoryview(buf)[:want]
                yield view
                self.total += want
                if self.on_progress is not None:
                    self.on_progress(self.total)
                done, buf = buf, None
                self.release(self.free, done)
                if not next_want:
                    if self.after_read is not None:
                        self.after_read(entry)
                    return
                if pending is not None:
                    p, pending = pending, None
                    p.result()
                else:
                    nbuf = self._get(next_want)
                    self._fill(src, memoryview(nbuf), nxt, next_want, entry)
                buf, nbuf = nbuf, None
                pos, want = nxt, next_want
        finally:
            if pending is not None:  # never close the reader under a read still in flight
                try:
                    pending.result()
                except BaseException:  # noqa: BLE001 - the caller's exception is the one that matters
                    pass
            src.close()

    @staticmethod
    def _fill(src, view: memoryview, pos: int, want: int, entry: SourceEntry) -> None:
        got = 0
        while got < want:
            n = src.readinto_at(view[got:want], pos + got)
            if n == 0:
                raise SourceChanged(
                    f"source file is shorter than expected: {os.fsdecode(entry.source)} "
                    f"(wanted {entry.length} bytes from offset {entry.offset})")
            got += n


class _Hasher:
    """SHA-256 of a batch of chunks, split over two threads when it is big enough (both engines release the GIL).

    The C kernel hashes 16 chunks at once, so a half gets at least 16 chunks; hashlib halves any batch.
    """

    def __init__(self, pool: ThreadPoolExecutor, engine: str = "auto"):
        self.pool = pool
        self.engine, self.hash_chunks = sha256_batch.resolve(engine)
        self.group = 1 if self.engine == "python" else 16

    def __call__(self, batch: memoryview, chunk_size: int) -> bytes:
        n = -(-len(batch) // chunk_size)
        if n < 2 * self.group:
            return self.hash_chunks(batch, chunk_size)
        half = n // 2 // self.group * self.group * chunk_size
        other = self.pool.submit(self.hash_chunks, batch[half:], chunk_size)
        mine = self.hash_chunks(batch[:half], chunk_size)
        return mine + other.result()


def _open_local(entry: SourceEntry) -> LocalReader:
    return LocalReader(entry.source)


class DiscardOutput:
    """A seekable output that keeps only its length: `write_car` into it gives the root CID without a CAR."""

    def __init__(self):
        self.pos = 0
        self.end = 0

    def write(self, data) -> int:
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        self.pos += n
        self.end = max(self.end, self.pos)
        return n

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else (self.pos + pos if whence == 1 else self.end + pos)
        return self.pos

    def flush(self) -> None:
        pass


def patch_header(out: BinaryIO, start: int, root: bytes, sink=None) -> bytes:
    """Write the real header over the same-length placeholder at `start` (the root is known last), leave the
    file position at the end, and hand the header to the CommP sink, which takes it last."""
    header = car_header(root)
    end = out.tell()
    out.seek(start)
    out.write(header)
    out.seek(end)
    out.flush()
    if sink is not None:
        sink.set_prefix(header)
    return header


def decoded_entry_cids(entry_cids: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, CID]]:
    """The DAG writer's (path, CID bytes) as (path, CID), decoding each distinct CID once."""
    cids: dict[bytes, CID] = {}
    decoded = []
    for path, cid in entry_cids:
        c = cids.get(cid)
        if c is None:
            c = cids[cid] = CID.decode(cid)[0]
        decoded.append((path, c))
    return decoded


def write_car(entries: Iterable[SourceEntry], out: BinaryIO, *, profile: str = "kubo", wrap: bool = False,
              sink=None, before_read: Callable[[SourceEntry], None] | None = None,
              on_progress: Callable[[int], None] | None = None,
              open_reader: Callable[[SourceEntry], Reader] | None = None,
              after_read: Callable[[SourceEntry], None] | None = None,
              _params: unixfs.Params | None = None) -> CarResult:
    """Write the CARv1 of `entries` to `out` (seekable) and return the root, sizes and every entry's CID.

    Entries may come in any order; intermediate directories are implied by their paths. Without `wrap`, a
    single top-level entry is the root itself (as `car create --no-wrap`); several become one directory.
    `sink.update(buf)` receives every CAR byte after the first CARV1_HEADER_LENGTH, in order (buf is reused
    once update returns; it runs on the writer thread), then `sink.set_prefix(header)` the final header.
    `before_read(entry)` runs right before a file entry is opened (raise to refuse a changed file);
    `on_progress(n)` gets the source bytes read so far. `open_reader(entry)` gives the Reader of a file entry's
    bytes (core.source; default: the local file at entry.source), read in order from entry.offset;
    `after_read(entry)` runs once its last byte is read (a source re-check). `_params` (tests only) overrides
    the profile's shape.
    """
    params = _params or unixfs.get_params(profile)
    tree = unixfs.build_tree(entries)
    root_node = unixfs.dag_root(tree, wrap)
    start = out.tell()
    placeholder = car_header(PLACEHOLDER_ROOT)
    assert len(placeholder) == CARV1_HEADER_LENGTH
    out.write(placeholder)
    output = _Output(out, sink)
    writer = _BlockWriter(output, CARV1_HEADER_LENGTH)
    # one helper thread: it reads the next batch and hashes half of the current one while this thread works
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="car-helper")
    reader = _SourceReader(before_read, on_progress, pool, writer.release, open_reader, after_read)
    dag = unixfs.DagWriter(writer.put, reader, params, _Hasher(pool))
    try:
        root, _ = dag.build(root_node, wrapper=root_node is tree)
        writer.flush()
    finally:
        pool.shutdown(wait=True)
        try:
            output.close()  # always stop the writer thread; its own error (if any) is raised here
        finally:
            output.free.retire()  # buffers the sink still reads come back to the spares when it is done
            reader.free.retire()
    patch_header(out, start, root, sink)
    return CarResult(root_cid=CID.decode(root)[0], car_size=writer.size, block_count=writer.blocks,
                     entry_cids=decoded_entry_cids(dag.entry_cids), source_bytes=reader.total,
                     duplicate_blocks=writer.dup_blocks, duplicate_bytes=writer.dup_bytes, payload_size=writer.size)


def entries_for_paths(paths: Iterable[str | bytes]) -> list[SourceEntry]:
    """Entries for files and directories on disk; each path's base name is its top-level name in the DAG.

    Directories are walked recursively (every directory also gets an explicit "dir" entry, so empty ones are
    kept); symlinks become symlink entries and are not followed; other file types are refused (ValueError).
    """
    entries: list[SourceEntry] = []
    names: set[bytes] = set()
    for path in paths:
        raw = os.fsencode(path)
        base = os.path.basename(raw.rstrip(b"/"))
        if base in (b"", b".", b".."):
            base = os.path.basename(os.path.realpath(raw))
        if not base:
            raise ValueError(f"cannot name {os.fsdecode(raw)!r} in the CAR; give a file or directory below /")
        if base in names:
            raise ValueError(f"two inputs are both named {os.fsdecode(base)!r} at the top of the CAR")
        names.add(base)
        stack = [(raw, base)]
        while stack:
            fs_path, dag_path = stack.pop()
            st = os.lstat(fs_path)
            if stat.S_ISLNK(st.st_mode):
                entries.append(SourceEntry(dag_path, None, 0, 0, "symlink", os.readlink(fs_path)))
            elif stat.S_ISREG(st.st_mode):
                entries.append(SourceEntry(dag_path, fs_path, 0, st.st_size))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(SourceEntry(dag_path, None, 0, 0, "dir"))
                with os.scandir(fs_path) as it:
                    for child in it:
                        stack.append((child.path, dag_path + b"/" + child.name))
            else:
                raise ValueError(f"not a regular file, directory or symlink: {os.fsdecode(fs_path)}")
    return entries
