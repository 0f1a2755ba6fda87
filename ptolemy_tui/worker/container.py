"""One container, one pass: its items are read straight from the source tree into the CAR writer, whose output
goes to `<staging>/<project>/container-NNNNNN.gG.part` (G: the claim's generation, see store/transitions.py) and, byte for byte as it is written, to the CommP hasher
(the 59-byte header, known last, is handed over at the end). fsync, then rename to `<pieceCID>.car`: a file with
that name is always complete. Any failure removes the partial file.

Items are read through the project's Source (core.source: a local tree or a bucket). Before an item is read
its state is compared with the scan (size and mtime; ETag too for an object): a change fails the container
("source changed since scan: PATH") rather than putting bytes nobody scanned into a CAR. `Checks` keeps the state
seen before each item so it can be compared again after the read (`Checks.after`).
"""
from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass

from ptolemy_tui.core import carv2
from ptolemy_tui.core.car import CARV1_HEADER_LENGTH, SourceChanged, SourceEntry, write_car
from ptolemy_tui.core.packing import CONTAINER_WRAP
from ptolemy_tui.core.commp import CommP
from ptolemy_tui import faults
from ptolemy_tui.core.source import (EntryState, ScanFacts, Source, SourceError, SourceMissing, changed_since_scan,
                                     changed_while_reading, read_order)
from ptolemy_tui.store.models import Container, ContainerItem, File, Project
from ptolemy_tui.store import transitions
from ptolemy_tui.worker import dbretry, inline, settings, staging
from ptolemy_tui.worker.reporter import Reporter

log = logging.getLogger(__name__)

COMMP_THREADS = 2  # the CAR writer and two hashing threads keep two cores busy even in a serial build


class Aborted(Exception):
    """The claim is gone (cancel, or another worker took over after an expired lease): stop, keep nothing."""


def check_size_model(container: Container, result) -> None:
    """The packer's exact CAR size (core/carmodel) against the CAR just written: a mismatch means the size model
    and the writer disagree, and every fill and piece-fit figure built on the model is wrong, so the container
    fails loudly instead of being recorded. Equal blocks written once (deduplication) are the one allowed gap."""
    written = result.payload_size
    if container.predicted_size != written + result.duplicate_bytes:
        dedup = f" (+{result.duplicate_bytes} bytes of duplicate blocks)" if result.duplicate_bytes else ""
        raise ContainerFailed(f"CAR size model is wrong for container {container.seq}: predicted "
                              f"{container.predicted_size} bytes, wrote {written}{dedup}; please report it")


class ContainerFailed(Exception):
    """The container cannot be built as scanned; the message is what the operator reads."""


@dataclass
class Outcome:
    status: str  # built, failed, aborted
    message: str = ""
    enospc: bool = False
    car_path: str | None = None


def _entries(container: Container) -> tuple[list[SourceEntry], dict[bytes, ScanFacts], list[tuple]]:
    """SourceEntries in item order (`source`: the path relative to the source's root), the scan facts to check
    per CAR path, and (car path, file id, offset, length) for the CarEntry rows. Plain tuples, not model
    instances: building a ContainerItem and a File per item cost ~35 us."""
    entries, expected, rows = [], {}, []
    query = (ContainerItem.select(ContainerItem.car_path, ContainerItem.offset, ContainerItem.length, File.id,
                                  File.path, File.kind, File.size, File.mtime_ns, File.etag, File.link_target)
             .join(File).where(ContainerItem.container == container.id).order_by(ContainerItem.seq).tuples())
    for car_path, offset, length, file_id, path, kind, size, mtime_ns, etag, link_target in query:
        car_path, path, link_target = bytes(car_path), bytes(path), bytes(link_target) if link_target else b""
        kind = "symlink" if kind == "symlink" else "file"
        entries.append(SourceEntry(dag_path=car_path, source=path, offset=offset, length=length, kind=kind,
                                   link_target=link_target))
        expected[car_path] = ScanFacts(kind, size, mtime_ns, etag, link_target)
        rows.append((car_path, file_id, offset, length))
    return entries, expected, rows


class Checks:
    """The source re-checks around each item: `before` (against the scan) keeps what it saw, so `after` can
    tell whether the item changed while it was read. `current` names the item being read, for errors that do
    not (EIO, a short read)."""

    def __init__(self, source: Source, expected: dict[bytes, ScanFacts]):
        self.source = source
        self.expected = expected
        self.seen: dict[bytes, EntryState] = {}
        self.current: str | None = None

    def before(self, entry: SourceEntry) -> EntryState:
        shown = self.current = self.source.label(entry.source)
        try:
            state = self.source.stat(entry.source)
        except SourceMissing:
            raise ContainerFailed(f"source file vanished since scan: {shown}") from None
        if changed_since_scan(state, self.expected[entry.dag_path]):
            raise ContainerFailed(f"source changed since scan: {shown}")
        self.seen[entry.dag_path] = state
        return state

    def after(self, entry: SourceEntry) -> tuple[EntryState, EntryState]:
        """(state before the read, state now); the caller decides what a difference means."""
        try:
            now_state = self.source.stat(entry.source)
        except SourceMissing:
            raise ContainerFailed(f"source file vanished while reading: {self.current}") from None
        return self.seen.pop(entry.dag_path), now_state

    def unchanged_while_read(self, entry: SourceEntry) -> None:
        """The item's change token (size, mtime_ns, ctime_ns, inode locally; size, LastModified, ETag for an
        object) must be the one seen before the read, which matched the scan: a file rewritten in place, even
        to the same size, while its bytes went into the CAR fails the container instead of yielding a CAR of
        bytes that never existed together."""
        before, now_state = self.after(entry)
        if changed_while_reading(before, now_state):
            raise ContainerFailed(f"source changed while reading: {self.current}")


def _describe_oserror(exc: OSError, part: str) -> tuple[str, bool]:
    name = errno.errorcode.get(exc.errno or 0, "")
    where = os.fsdecode(exc.filename) if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"no space left on the staging disk while writing {where or part} (ENOSPC)", True
    if exc.errno == errno.ENOENT and where:
        return f"source file vanished since scan: {where}", False
    text = exc.strerror or str(exc)
    return f"{text} ({name}){': ' + where if where else ''}", False


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _ReadHooks:
    """What the CAR writer calls around each read: stop when the claim is gone, compare the source with the
    scan, report progress, and pace reads to PTOLEMY_READ_RATE."""

    def __init__(self, reporter: Reporter, checks: "Checks"):
        self.reporter, self.checks = reporter, checks
        self.read_rate = settings.read_rate_limit()
        self.started = time.monotonic()

    def before_read(self, entry: SourceEntry) -> None:
        if self.reporter.claim_lost.is_set():
            raise Aborted()
        self.checks.before(entry)

    def on_progress(self, done: int) -> None:
        faults.reach("mid-write")
        self.reporter.progress(done)
        if self.reporter.claim_lost.is_set():
            raise Aborted()
        if self.read_rate:
            ahead = done / self.read_rate - (time.monotonic() - self.started)
            if ahead > 0:
                time.sleep(ahead)


def build(project: Project, container: Container, *, staging_dir: str, source: Source,
          holder: transitions.Holder, host: str,
          reporter: Reporter, profile: str = "kubo") -> Outcome:
    """Build one claimed container into staging and record it. Never raises for a per-container problem."""
    part = staging.part_path(staging_dir, project.name, container.seq, container.generation)
    for orphan in staging.expired_parts(staging_dir, project.name, container.seq, container.generation):
        log.info("removing %s, left by an earlier claim of container %s", orphan, container.seq)
        _remove(orphan)  # an older generation of this container: its claim expired when ours was granted
    faults.reach("after-claim")
    entries, expected, rows = dbretry.retrying(lambda: _entries(container), "reading items")
    checks = Checks(source, expected)
    hooks = _ReadHooks(reporter, checks)
    if project.load_type == "inline":
        return inline.build(container, entries, rows, holder=holder, host=host, reporter=reporter, profile=profile,
                            source=source, checks=checks, before_read=hooks.before_read,
                            on_progress=hooks.on_progress, fail=_fail, started=hooks.started)
    ours: list[int] = []  # the inode of the partial file we created, to never remove another worker's
    try:
        result, piece = _write_part(project, container, part, entries, expected, source, profile, hooks, ours)
        final = _publish(project, part, staging_dir, piece, holder, reporter)
    except Exception as exc:  # noqa: BLE001 - every failure ends this container, never the worker
        _remove_if_ours(part, ours)
        return _outcome_of_failure(exc, container, holder, part, checks)
    return _record(container, holder, host, final, result, piece, rows, time.monotonic() - hooks.started)


def _write_part(project: Project, container: Container, part: str, entries: list[SourceEntry], expected: dict,
                source: Source, profile: str, hooks: _ReadHooks, ours: list[int]):
    """Write the CAR to its .part file (fsynced) and hash it on the way: (CarResult, piece)."""
    checks = hooks.checks
    os.makedirs(os.path.dirname(part), exist_ok=True)
    # a source that reads ahead (S3) learns the ranges in the order the CAR writer will ask for them
    source.plan([(e.source, e.offset, e.length, expected[e.dag_path].etag)
                 for e in read_order(entries, CONTAINER_WRAP, profile)])
    v2 = project.car_version == 2  # CARv2: the same payload, go-car's header and index; CommP of the whole file
    hasher = CommP(deferred_prefix=carv2.PREFIX_LENGTH if v2 else CARV1_HEADER_LENGTH, threads=COMMP_THREADS)
    try:
        with open(part, "x+b" if v2 else "xb") as out:
            ours.append(os.fstat(out.fileno()).st_ino)
            result = (carv2.write_car_v2 if v2 else write_car)(
                entries, out, profile=profile, wrap=CONTAINER_WRAP, sink=hasher,
                before_read=hooks.before_read, on_progress=hooks.on_progress,
                open_reader=lambda entry: source.open(entry.source, entry.offset, entry.length),
                after_read=checks.unchanged_while_read)
            out.flush()
            os.fsync(out.fileno())
        piece = hasher.digest()
    finally:
        hasher.close()
        source.close()  # stop reading ahead (S3), whatever happened
    if piece.payload_size != result.car_size:
        raise ContainerFailed(f"internal error: CommP saw {piece.payload_size} bytes, the CAR has {result.car_size}")
    check_size_model(container, result)
    return result, piece


def _publish(project: Project, part: str, staging_dir: str, piece, holder: transitions.Holder,
             reporter: Reporter) -> str:
    """Rename the .part to `<pieceCID>.car`. Another worker may have taken the container over (our lease expired
    during a stall): the rename is fenced by our claim's generation, in the store, while the row is held."""
    faults.reach("before-rename")
    if reporter.claim_lost.is_set():
        raise Aborted()
    final = staging.car_path(staging_dir, project.name, piece.piece_cid_v1)
    if not dbretry.retrying(lambda: transitions.rename_if_held(holder, part, final), "renaming the CAR"):
        raise Aborted()
    faults.reach("after-rename")
    _fsync_dir(os.path.dirname(final))
    return final


def _outcome_of_failure(exc: Exception, container: Container, holder: transitions.Holder, part: str,
                        checks: "Checks") -> Outcome:
    """What a failure while writing or renaming means for the container, in the operator's words."""
    if isinstance(exc, Aborted):
        return Outcome("aborted", "the claim was cancelled or taken over")
    if isinstance(exc, ContainerFailed):
        return _fail(container, holder, str(exc))
    if isinstance(exc, SourceChanged):  # shorter than scanned although size and mtime matched (a rewrite in place)
        return _fail(container, holder, f"source changed since scan: {checks.current or str(exc)}")
    if isinstance(exc, SourceMissing):
        return _fail(container, holder, f"source file vanished since scan: {checks.current}")
    if isinstance(exc, SourceError):  # unreachable after retries, access denied: one line that names the source
        return _fail(container, holder, str(exc))
    if isinstance(exc, OSError):
        message, enospc = _describe_oserror(exc, part)
        if not exc.filename and not enospc and checks.current:
            message += f" (last source file read: {checks.current})"
        return _fail(container, holder, message, enospc=enospc)
    log.error("container %s: unexpected error", container.seq, exc_info=exc)  # a bug fails one container
    return _fail(container, holder, f"internal error: {exc.__class__.__name__}: {exc}")


def _record(container: Container, holder: transitions.Holder, host: str, final: str, result, piece,
            rows: list[tuple], seconds: float) -> Outcome:
    """Record the CAR and its entries under the claim."""
    car_fields = dict(path=final, payload_cid=str(result.root_cid), piece_cid=piece.piece_cid_v1,
                      piece_cid_v2=piece.piece_cid_v2, car_size=result.car_size,
                      padded_piece_size=piece.padded_piece_size, seconds=round(seconds, 3), host=host)
    cids = {path: str(cid) for path, cid in result.entry_cids}
    entry_rows = [(path, cids[path], file_id, offset, length) for path, file_id, offset, length in rows
                  if path in cids]
    faults.reach("before-record")
    recorded = dbretry.retrying(lambda: transitions.record_built(holder, container, car_fields, entry_rows),
                                "recording the CAR")
    if not recorded:
        # The claim went away between the rename and the record. The CAR is complete and byte-identical to
        # what a rebuild writes under the same name, so it is left in place for that rebuild to replace.
        return Outcome("aborted", "the claim was cancelled or taken over before the CAR was recorded", car_path=final)
    return Outcome("built", car_path=final)


def _remove_if_ours(part: str, ours: list[int]) -> None:
    """Remove our partial file, but not one a worker that took the container over has since created there."""
    try:
        if ours and os.stat(part).st_ino == ours[0]:
            os.unlink(part)
    except FileNotFoundError:
        pass


def _fail(container: Container, holder: transitions.Holder, message: str, *, enospc: bool = False) -> Outcome:
    log.error("container %s failed: %s", container.seq, message)
    dbretry.retrying(lambda: transitions.fail(holder, container, message), "recording a failure")
    return Outcome("failed", message, enospc=enospc)
