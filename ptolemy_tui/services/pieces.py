"""Pieces as the HTTP server and `car export` see them: which CAR a piece CID names, where its bytes come from
(a staged file, or an inline plan and its sources), staleness, and the transfer records the TUI shows.

Only CIDs the store knows resolve; a path never comes from a request.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Iterable

import peewee

from ptolemy_tui.core.carplan import CarPlan as Plan, SourceRanges
from ptolemy_tui.core.source import ScanFacts, Source, SourceError, SourceMissing, changed_since_scan
from ptolemy_tui.core.sources import source_for
from ptolemy_tui.core.multiformats import CID
from ptolemy_tui.errors import OperationFailed, UsageError
from ptolemy_tui.services import events, projects
from ptolemy_tui.store.models import database, Car, CarPlan, Container, ContainerItem, File, Project, Transfer, now

TRANSFER_KEYS = ("server", "client", "project", "piece_cid", "inline", "range_start", "range_end", "bytes_sent",
                 "rate", "status", "state", "message", "started_at", "updated_at", "finished_at")
TRANSFER_LIVE_AFTER = 10.0  # an active transfer not updated for this long belongs to a server that is gone
KEEP_TRANSFERS = 24 * 3600.0  # finished transfers older than this are dropped when a server starts


@dataclass
class SourceItem:
    rel: bytes          # the file, relative to the project's source
    offset: int         # the item's byte range in it
    length: int
    facts: ScanFacts    # what the scan (and so the build) saw


@dataclass
class Piece:
    """Everything needed to serve one piece, read once and cached by the server for a few seconds."""

    car_id: int
    project_id: int
    project: str
    container: int      # container seq
    piece_cid: str
    piece_cid_v2: str | None
    payload_cid: str
    car_size: int
    path: str           # the staged CAR; "" for an inline CAR
    stale_reason: str | None
    plan: Plan | None = None
    sources: list[SourceItem] = field(default_factory=list)  # by plan source index (container item order)
    source: Source | None = None

    @property
    def inline(self) -> bool:
        return self.plan is not None

    @property
    def etag(self) -> str:
        return f'"{self.piece_cid}"'  # the piece CID names these exact bytes: a strong validator

    def changed_source(self, indexes: Iterable[int]) -> str | None:
        """The first of these sources whose size or mtime differs from the build's, as a reason; else None."""
        for i in sorted(indexes):
            item = self.sources[i]
            try:
                state = self.source.stat(item.rel)
            except SourceMissing:
                return f"source file vanished since the build: {self.shown_source(i)}"
            except (SourceError, OSError) as exc:
                return f"cannot read source file {self.shown_source(i)}: {getattr(exc, 'strerror', None) or exc}"
            if changed_since_scan(state, item.facts):
                return f"source changed since the build: {self.shown_source(i)}"
        return None

    def reader(self) -> SourceRanges:
        return SourceRanges(self.source, [(s.rel, s.offset, s.length) for s in self.sources])

    def shown_source(self, index: int) -> str:
        return self.source.label(self.sources[index].rel)



def canonical_cid(text: str) -> str | None:
    """The CID in its canonical text form (base32 lower for v1), or None when it is no CID."""
    try:
        return str(CID.parse(text))
    except Exception:  # noqa: BLE001 - any parse failure means "not a CID"
        return None


def find_piece(cid_text: str, project_ids: list[int] | None = None, source_root: str | None = None) -> Piece | None:
    """The CAR whose piece CID (v1 or v2) is cid_text, limited to project_ids when given; None when unknown."""
    cid = canonical_cid(cid_text)
    if cid is None:
        return None
    query = (Car.select(Car, Container.id, Container.seq, Project).join(Container)
             .switch(Car).join(Project)
             .where((Car.piece_cid == cid) | (Car.piece_cid_v2 == cid)))
    if project_ids is not None:
        query = query.where(Car.project.in_(project_ids))
    car = query.order_by(Car.id).first()
    if car is None:
        return None
    piece = Piece(car_id=car.id, project_id=car.project_id, project=car.project.name, container=car.container.seq,
                  piece_cid=car.piece_cid, piece_cid_v2=car.piece_cid_v2, payload_cid=car.payload_cid,
                  car_size=car.car_size, path=car.path, stale_reason=car.stale_reason)
    row = CarPlan.get_or_none(CarPlan.car == car.id)
    if row is not None:
        piece.plan = Plan.decode(bytes(row.data))
        piece.source = source_for(car.project, source_root)
        items = (ContainerItem.select(ContainerItem.offset, ContainerItem.length, File.path, File.size,
                                      File.mtime_ns, File.kind, File.link_target, File.etag).join(File)
                 .where(ContainerItem.container == car.container.id).order_by(ContainerItem.seq).tuples())
        piece.sources = [SourceItem(bytes(p), off, length,
                                    ScanFacts("symlink" if kind == "symlink" else "file", size, mtime, etag,
                                              bytes(target) if target else b""))
                         for off, length, p, size, mtime, kind, target, etag in items]
    return piece


def project_ids(names: list[str]) -> list[int] | None:
    """The ids of the named projects (each must exist), or None for every project."""
    if not names:
        return None
    return [projects.get(name).id for name in names]


def mark_stale(piece: Piece, reason: str) -> None:
    """Record that an inline CAR can no longer be regenerated as built (once; the reason is kept)."""
    with database.atomic():
        changed = Car.update(stale_reason=reason).where((Car.id == piece.car_id) & Car.stale_reason.is_null()).execute()
        if changed:
            events.record(piece.project_id, f"CAR of container {piece.container} ({piece.piece_cid}) is stale: {reason}",
                       level="error")
    piece.stale_reason = piece.stale_reason or reason


def plan_stats(project: Project | str) -> dict[str, int]:
    """Inline CARs of a project: how many, their bytes, and the bytes their plans take in the store."""
    project = projects.get(project) if isinstance(project, str) else project
    row = (CarPlan.select(peewee.fn.COUNT(CarPlan.id), peewee.fn.SUM(Car.car_size),
                          peewee.fn.SUM(peewee.fn.LENGTH(CarPlan.data)))
           .join(Car).where(Car.project == project.id).tuples().first())
    count, car_bytes, plan_bytes = row or (0, 0, 0)
    return {"inline_cars": int(count or 0), "inline_car_bytes": int(car_bytes or 0),
            "plan_bytes": int(plan_bytes or 0)}


# ---------------------------------------------------------------- car export


def export_car(project_name: str, container_seq: int, out_path: str, *, on_progress=None) -> dict[str, Any]:
    """Write an inline CAR to a file (regenerated and re-hashed from its sources); a partial file never stays."""
    from ptolemy_tui.core.car import SourceChanged

    project = projects.get(project_name)
    car = (Car.select().join(Container).where((Car.project == project.id) & (Container.seq == container_seq))
           .first())
    if car is None:
        raise UsageError(f"container {container_seq} of {project.name} has no CAR yet: "
                         f"see `ptolemy cars {project.name}`")
    piece = find_piece(car.piece_cid, [project.id])
    if piece is None or not piece.inline:
        raise UsageError(f"container {container_seq} of {project.name} is a staged CAR ({car.path}), not inline: "
                         "copy that file instead")
    if os.path.exists(out_path):
        raise UsageError(f"{out_path} exists: remove it or choose another -o")
    parent = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(parent):
        raise UsageError(f"directory {parent} does not exist: create it or choose another -o")
    reason = piece.stale_reason or piece.changed_source(piece.plan.sources())
    if reason:
        if not piece.stale_reason:
            mark_stale(piece, reason)
        raise OperationFailed(f"cannot export container {container_seq}: {reason}")
    part = out_path + ".part"
    written = 0
    try:
        with piece.reader() as read_at, open(part, "xb") as out:
            for chunk in piece.plan.iter_range(0, piece.car_size, read_at):
                out.write(chunk)
                written += len(chunk)
                if on_progress is not None:
                    on_progress(written, piece.car_size)
            out.flush()
            os.fsync(out.fileno())
        os.rename(part, out_path)
    except SourceChanged as exc:
        _remove(part)
        mark_stale(piece, f"source changed since the build ({exc})")
        raise OperationFailed(f"cannot export container {container_seq}: source changed since the build") from None
    except BaseException:
        _remove(part)
        raise
    return {"project": project.name, "container": container_seq, "output": out_path, "car_size": piece.car_size,
            "payload_cid": piece.payload_cid, "piece_cid": piece.piece_cid, "piece_cid_v2": piece.piece_cid_v2}


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def verify_inline(piece_cid: str, project_id: int) -> list[str]:
    """Problems found regenerating an inline CAR whole (a changed source, a different piece CID); [] if none."""
    from ptolemy_tui.core.car import SourceChanged
    from ptolemy_tui.core.commp import CommP

    piece = find_piece(piece_cid, [project_id])
    if piece is None or not piece.inline:
        return ["no plan recorded for this inline CAR"]
    if piece.stale_reason:
        return [f"stale: {piece.stale_reason}"]
    reason = piece.changed_source(piece.plan.sources())
    if reason:
        mark_stale(piece, reason)
        return [reason]
    hasher = CommP(threads=2)
    try:
        with piece.reader() as read_at:
            for chunk in piece.plan.iter_range(0, piece.car_size, read_at):
                hasher.update(chunk)
        got = hasher.digest()
    except SourceChanged as exc:
        reason = f"source changed since the build ({exc})"
        mark_stale(piece, reason)
        return [reason]
    finally:
        hasher.close()
    if got.piece_cid_v1 != piece.piece_cid:
        return [f"piece CID {got.piece_cid_v1}, recorded {piece.piece_cid}"]
    return []


# ---------------------------------------------------------------- transfers


def server_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def save_transfers(rows: list[dict[str, Any]]) -> None:
    """Insert or update transfer rows (each with `id` None when new; ids are filled in), one transaction."""
    if not rows:
        return
    with database.atomic():
        for row in rows:
            values = {k: row[k] for k in TRANSFER_KEYS if k in row and k != "project"}
            values["project"] = row.get("project_id")
            if row.get("id") is None:
                row["id"] = Transfer.insert(**values).execute()
            else:
                Transfer.update(**values).where(Transfer.id == row["id"]).execute()


def drop_old_transfers(older_than: float = KEEP_TRANSFERS) -> int:
    with database.atomic():
        return Transfer.delete().where(Transfer.started_at < now() - older_than).execute()


def end_server_transfers(server: str, message: str = "the server stopped") -> None:
    """Close what a server left active (it stopped, or a new one with its name starts)."""
    with database.atomic():
        Transfer.update(state="aborted", message=message, finished_at=now()).where(
            (Transfer.server == server) & (Transfer.state == "active")).execute()


def list_transfers(project: Project | str | int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Live transfers first (newest first), then the most recent finished ones; at most `limit` rows.
    `project`: a Project, its name or its id; None for every project."""
    query = Transfer.select(Transfer, Project.name).join(Project, peewee.JOIN.LEFT_OUTER)
    if project is not None:
        project = projects.get(project) if isinstance(project, str) else project
        query = query.where(Transfer.project == (project if isinstance(project, int) else project.id))
    at = now()
    live_cut = at - TRANSFER_LIVE_AFTER
    rows = []
    for t in query.order_by(Transfer.started_at.desc()).limit(limit):
        live = t.state == "active" and t.updated_at > live_cut
        rows.append({"id": t.id, "server": t.server, "client": t.client,
                     "project": t.project.name if t.project_id else None, "piece_cid": t.piece_cid,
                     "inline": t.inline, "range_start": t.range_start, "range_end": t.range_end,
                     "bytes_total": t.range_end - t.range_start, "bytes_sent": t.bytes_sent,
                     "rate": t.rate if live else 0.0, "status": t.status,
                     "state": t.state if t.state != "active" or live else "lost",
                     "message": t.message, "started_at": t.started_at, "updated_at": t.updated_at,
                     "finished_at": t.finished_at, "live": live})
    rows.sort(key=lambda r: (not r["live"], -r["started_at"]))
    return rows


def live_transfer_count(project: Project | None = None) -> int:
    query = Transfer.select().where((Transfer.state == "active") & (Transfer.updated_at > now() - TRANSFER_LIVE_AFTER))
    if project is not None:
        query = query.where(Transfer.project == project.id)
    return query.count()
