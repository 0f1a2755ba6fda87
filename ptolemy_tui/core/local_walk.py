"""The local source's directory walk: scandir + lstat, in threads, here or in a child process.

Stdlib only: the child process runs this file as a script (`python -I local_walk.py ROOT THREADS`) so it starts
in milliseconds and walks on the second core while the parent only inserts — in one process the walk and the
inserts share one GIL. The child sends each chunk as a length-prefixed `marshal` frame on stdout.

A chunk is a tuple `(rel, files, nfiles, nbytes, others, subdirs, error, last)`:

- `rel`: the directory's path relative to the root (bytes, b"" for the root);
- `files`: the regular files, flat and ready to bind: `[path, name, size, mtime_ns, inode, path, name, ...]`
  (`path` relative to the root); `nfiles`, `nbytes`: their count and bytes;
- `others`: every other non-directory entry as `(path, name, kind, size, mtime_ns, inode, link_target, error)`;
- `subdirs`: names of subdirectories; `error`: why the listing failed (or stopped half-way), else None;
- `last`: False when a huge directory continues in a later chunk.

Paths stay bytes throughout (os.scandir on a bytes path), so names that are not UTF-8 round-trip exactly.
"""
from __future__ import annotations

import marshal
import os
import queue
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from typing import Callable

CHUNK_ENTRIES = 4096  # a huge directory goes out in pieces of this many entries
FILE_FIELDS = 5  # path, name, size, mtime_ns, inode per regular file in a chunk's flat `files`
# A listing that waits more than this per entry is waiting on I/O (NFS, a cold disk): then more threads list at
# once. On a warm local cache a listing costs ~3 µs of CPU an entry, and extra threads only fight over the GIL.
# The wait is the listing's wall time less its own CPU time and less the time its chunks waited for the
# consumer: a busy consumer or a busy machine is not slow I/O (counting them widened the walk of a warm tmpfs
# to 8 threads in one 1M-file scan out of four, and made it 1.3-2x slower).
SLOW_PER_ENTRY = 30e-6
SLOW_MIN = 0.002  # seconds: waits shorter than this never count as slow
WALL_CLOCK, CPU_CLOCK = time.perf_counter, time.thread_time  # module names, so tests can drive them
_FRAME = struct.Struct("<I")


_EUID = os.geteuid()
_GROUPS = frozenset(os.getgroups()) | {os.getegid()}
NOT_READABLE = "permission denied: not readable by the scanning user"


def readable(path: bytes, st: os.stat_result) -> bool:
    """Can the effective user read this file? The mode bits of the user's class answer without a system call
    for nearly every file; only when they say no does faccessat(AT_EACCESS) decide (root, ACLs), so a file the
    build could not open is found here, as a scan error, and not as a failed container hours later."""
    mode = st.st_mode
    if st.st_uid == _EUID:
        granted = mode & stat.S_IRUSR
    elif st.st_gid in _GROUPS:
        granted = mode & stat.S_IRGRP
    else:
        granted = mode & stat.S_IROTH
    return bool(granted) or os.access(path, os.R_OK, effective_ids=True)


def describe(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def special_kind(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "unknown file type"


# How a directory is listed. A seam: a test replaces it to refuse a directory as the kernel refuses another user
# (the tests run as root, where chmod 000 stops nothing). Only a walk in this process sees the replacement, so
# such a test scans with walker_mode="threads".
list_directory: Callable = os.scandir

class ListingPool:
    """Threads that list a tree a directory (or a key prefix) at a time: the local walk's and the bucket's shared
    shape. Jobs come from `todo`; each job's chunks go to `out` (a bounded queue), and a job queues the jobs of its
    subdirectories (adding them to `pending` under `lock`) only after its own chunk, so a consumer always sees a
    directory named before any chunk of it. When no job is left, None goes to `out`; an exception goes there too.
    Here (stdlib only) so the walker process can run this file; the bucket's lister (source_s3) shares it."""

    def __init__(self, out, cancel: threading.Event, count: int, name: str, first_job):
        self.out = out
        self.cancel = cancel
        self.todo: queue.Queue = queue.Queue()
        self.pending = 1  # jobs queued or running
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, name=f"{name}-{n}", daemon=True) for n in range(count)]
        self.todo.put(first_job)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        for _ in self.threads:
            self.todo.put(None)

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def list_job(self, job) -> None:
        """List one directory or prefix: emit its chunk, then queue its subdirectories' jobs."""
        raise NotImplementedError

    def _run(self) -> None:
        while True:
            job = self.todo.get()
            if job is None:
                return
            try:
                if not self.cancel.is_set():
                    self.list_job(job)
            except BaseException as exc:  # noqa: BLE001 - the consumer reports it; never leave it waiting
                self.out.put(exc)
            with self.lock:
                self.pending -= 1
                done = self.pending == 0
            if done:
                self.out.put(None)  # everything listed


class Walker(ListingPool):
    """A pool of threads listing directories; chunks go to `out` (a bounded queue), then None at the end, or an
    exception. A chunk is emitted before its subdirectories are queued, so a consumer always sees a directory
    named (in its parent's chunk) before any chunk of the directory itself.

    Only `active` threads list at a time: one to start with, more (up to `threads`) once listings turn out to
    wait on I/O, so NFS round trips overlap while a warm local tree is walked without GIL contention."""

    def __init__(self, root: bytes, threads: int, out, cancel: threading.Event):
        self.root = root
        self.max_active = threads
        self.gate = threading.Semaphore(1)
        self.active = 1
        super().__init__(out, cancel, threads, "scan-walk", b"")

    def list_job(self, rel: bytes) -> None:
        with self.gate:
            self._list(rel)

    def _widen(self) -> None:
        with self.lock:
            grow = min(self.max_active, self.active * 2) - self.active
            self.active += grow
        for _ in range(grow):
            self.gate.release()

    def _emit(self, chunk: tuple) -> None:
        self.out.put(chunk)
        subdirs = chunk[5]
        if subdirs:
            rel = chunk[0]
            prefix = rel + b"/" if rel else b""
            with self.lock:
                self.pending += len(subdirs)
            for name in subdirs:
                self.todo.put(prefix + name)

    def _list(self, rel: bytes) -> None:
        started, cpu_started = WALL_CLOCK(), CPU_CLOCK()
        in_emit = [0.0, 0.0]  # wall and CPU seconds spent handing chunks over

        def emit(chunk: tuple) -> None:
            wall, cpu = WALL_CLOCK(), CPU_CLOCK()
            self._emit(chunk)
            in_emit[0] += WALL_CLOCK() - wall
            in_emit[1] += CPU_CLOCK() - cpu
        full = self.root + b"/" + rel if rel else self.root
        prefix = rel + b"/" if rel else b""
        files: list = []
        others: list = []
        subdirs: list = []
        nfiles = nbytes = count = 0
        try:
            it = list_directory(full)
        except OSError as exc:
            self._emit((rel, files, 0, 0, others, subdirs, describe(exc), True))
            return
        add_file = files.extend
        S_ISREG = stat.S_ISREG
        with it:
            try:
                for entry in it:  # every per-entry OSError is caught below: one out here is the listing's own
                    name = entry.name
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            subdirs.append(name)
                        else:
                            st = entry.stat(follow_symlinks=False)
                            mode = st.st_mode
                            if S_ISREG(mode) and not readable(entry.path, st):
                                others.append((prefix + name, name, "error", st.st_size, st.st_mtime_ns, st.st_ino,
                                               None, NOT_READABLE))
                            elif S_ISREG(mode):
                                size = st.st_size
                                add_file((prefix + name, name, size, st.st_mtime_ns, st.st_ino))
                                nfiles += 1
                                nbytes += size
                            elif stat.S_ISLNK(mode):
                                try:
                                    target = os.readlink(entry.path)
                                    others.append((prefix + name, name, "symlink", st.st_size, st.st_mtime_ns,
                                                   st.st_ino, target, None))
                                except OSError as exc:
                                    others.append((prefix + name, name, "error", 0, st.st_mtime_ns, st.st_ino, None,
                                                   f"readlink: {describe(exc)}"))
                            else:
                                others.append((prefix + name, name, "special", 0, st.st_mtime_ns, st.st_ino, None,
                                               f"skipped: {special_kind(mode)}"))
                    except OSError as exc:
                        others.append((prefix + name, name, "error", 0, 0, 0, None, describe(exc)))
                    count += 1
                    if count >= CHUNK_ENTRIES:
                        emit((rel, files, nfiles, nbytes, others, subdirs, None, False))
                        files, others, subdirs = [], [], []
                        add_file = files.extend
                        nfiles = nbytes = count = 0
                        if self.cancel.is_set():
                            return
            except OSError as exc:  # a listing that fails half-way (NFS): keep what we have
                self._emit((rel, files, nfiles, nbytes, others, subdirs, describe(exc), True))
                return
        emit((rel, files, nfiles, nbytes, others, subdirs, None, True))
        waited = (WALL_CLOCK() - started - in_emit[0]) - (CPU_CLOCK() - cpu_started - in_emit[1])
        if self.active < self.max_active and waited > SLOW_MIN and waited > SLOW_PER_ENTRY * (count + 1):
            self._widen()


# -- the child process


class _PipeOut:
    """The child's `out`: frames on a binary stream, written by the walker threads under a lock."""

    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.Lock()
        self.done = threading.Event()

    def put(self, item) -> None:
        if item is None:
            data = marshal.dumps(None)
        elif isinstance(item, BaseException):
            data = marshal.dumps(("error", f"{item.__class__.__name__}: {item}"))
        else:
            data = marshal.dumps(item)
        with self.lock:
            try:
                self.stream.write(_FRAME.pack(len(data)) + data)
                self.stream.flush()
                if item is None or isinstance(item, BaseException):
                    self.done.set()
            except OSError:  # the parent is gone or stopped reading (cancelled): nothing left to do
                os._exit(0)


def child_main(argv: list) -> int:
    # Ctrl-C reaches the whole process group: the parent decides (it cancels, or dies and the pipe breaks).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    root = os.fsencode(argv[1])
    threads = int(argv[2])
    out = _PipeOut(sys.stdout.buffer)
    walker = Walker(root, threads, out, threading.Event())
    walker.start()
    out.done.wait()
    return 0


class ProcessWalker:
    """The parent's side: a child process walks; a reader thread turns its frames into chunks on `out`.

    Same protocol as Walker: chunks, then None at the end, or an exception."""

    def __init__(self, root: bytes, threads: int, out, cancel: threading.Event):
        self.out = out
        self.cancel = cancel
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__), root, str(threads)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     bufsize=0, close_fds=True)
        self.reader = threading.Thread(target=self._read, name="scan-walk-reader", daemon=True)
        self.threads = [self.reader]

    def start(self) -> None:
        self.reader.start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def alive(self) -> bool:
        return self.reader.is_alive()

    def _read_exact(self, stream, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            part = stream.read(n - len(buf))
            if not part:
                raise EOFError
            buf += part
        return bytes(buf)

    def _read(self) -> None:
        stream = self.proc.stdout
        try:
            while True:
                try:
                    (size,) = _FRAME.unpack(self._read_exact(stream, _FRAME.size))
                    item = marshal.loads(self._read_exact(stream, size))
                except EOFError:
                    if self.cancel.is_set():
                        self.out.put(None)
                        return
                    err = self.proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
                    raise RuntimeError(f"the scan's walker process ended early: {err[-1] if err else 'no message'}")
                if item is None:
                    self.out.put(None)
                    return
                if item[0] == "error" and len(item) == 2:
                    raise RuntimeError(f"the scan's walker process failed: {item[1]}")
                self.out.put(item)
        except BaseException as exc:  # noqa: BLE001 - the consumer reports it
            self.out.put(exc)
        finally:
            stream.close()
            self.proc.stderr.close()
            self.proc.wait()


if __name__ == "__main__":
    sys.exit(child_main(sys.argv))
