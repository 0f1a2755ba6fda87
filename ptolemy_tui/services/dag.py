"""`ptolemy dag NAME`: the dataset root DAG of a built project, written as one more CAR (the DAG CAR).

Everything comes from the store: each file's (or shard's) CID as its container CAR recorded it, sizes and
names from the scan, empty directories from the tree. No data is read. The DAG CAR goes to
`<staging>/<project>/<pieceCID>.car` (written to a .part name, fsynced, renamed) with its piece CID from the
same bytes, and is recorded as a DatasetRoot; each run adds one (the newest is current, older roots stay).
"""
from __future__ import annotations

import os
import socket
import time
from typing import Any

import peewee

from ptolemy_tui.core import carv2
from ptolemy_tui.core.car import CARV1_HEADER_LENGTH
from ptolemy_tui.core.dataset_dag import DatasetEntry, Piece, write_dataset_car
from ptolemy_tui.core.multiformats import CID
from ptolemy_tui.errors import UsageError
from ptolemy_tui.services import events, projects
from ptolemy_tui.store.fields import path_text
from ptolemy_tui.store.models import (Car, CarEntry, Container, ContainerItem, DatasetFile, DatasetRoot, Directory,
                                      File, Project, database)
from ptolemy_tui.store.queries import containers_by_state

ROOT_KEYS = ("root_cid", "piece_cid", "piece_cid_v2", "car_size", "padded_piece_size", "path", "car_version",
             "blocks", "files", "sharded_files", "bytes", "created_at", "seconds", "host")


def _project(project: Project | str) -> Project:
    return projects.get(project) if isinstance(project, str) else project


def current_root(project: Project | int) -> DatasetRoot | None:
    return (DatasetRoot.select().where(DatasetRoot.project == project)
            .order_by(DatasetRoot.id.desc()).first())


def root_doc(root: DatasetRoot) -> dict[str, Any]:
    return {key: getattr(root, key) for key in ROOT_KEYS}


def list_roots(project: Project | str) -> list[dict[str, Any]]:
    """Every dataset root of the project, newest first."""
    project = _project(project)
    query = DatasetRoot.select().where(DatasetRoot.project == project).order_by(DatasetRoot.id.desc())
    return [root_doc(r) for r in query]


def _require_built(project: Project) -> None:
    states = containers_by_state(project)
    if not states:
        raise UsageError(f"project {project.name} has no containers yet: "
                         f"`ptolemy containerize {project.name}` and `ptolemy build {project.name}` first")
    unbuilt = sum(n for state, n in states.items() if state != "built")
    if unbuilt:
        raise UsageError(f"project {project.name} has {unbuilt} container(s) not built yet: "
                         f"`ptolemy build {project.name} --wait` first")


def dataset_entries(project: Project) -> tuple[list[DatasetEntry], dict[bytes, int]]:
    """The DAG's entries from the store, and path -> file id. A file packed twice (a rescan found it changed
    and it was packed again) takes its pieces from the newest container."""
    files: dict[int, tuple[bytes, int, str, int]] = {}
    query = (File.select(File.id, File.path, File.size, File.kind, File.link_target)
             .where((File.project == project) & (File.kind.in_(("file", "symlink")))).tuples())
    for fid, path, size, kind, target in query.iterator():
        files[fid] = (bytes(path), size, kind, len(bytes(target or b"")))
    pieces: dict[int, list[tuple[int, int, int, str | None, str | None]]] = {}
    query = (ContainerItem.select(ContainerItem.file, ContainerItem.offset, ContainerItem.length, Container.seq,
                                  CarEntry.cid, Car.stale_reason)
             .join(Container)
             .join(Car, peewee.JOIN.LEFT_OUTER, on=(Car.container == Container.id))
             .join(CarEntry, peewee.JOIN.LEFT_OUTER,
                   on=((CarEntry.car == Car.id) & (CarEntry.path == ContainerItem.car_path)))
             .where(Container.project == project.id).tuples())
    for fid, offset, length, seq, cid, stale in query.iterator():
        if fid in files:
            pieces.setdefault(fid, []).append((offset, -seq, length, cid, stale))
    entries: list[DatasetEntry] = []
    ids: dict[bytes, int] = {}
    for fid, (path, size, kind, target_len) in files.items():
        best: dict[int, tuple] = {}
        for item in sorted(pieces.get(fid, ())):  # per offset, the newest container first
            best.setdefault(item[0], item)
        chosen: list[Piece] = []
        pos = 0
        while True:
            item = best.get(pos)
            if item is None:
                raise UsageError(f"{path_text(path)} is not packed completely (nothing from byte {pos}): "
                                 f"`ptolemy containerize {project.name}` and build first")
            offset, neg_seq, length, cid, stale = item
            if cid is None:
                raise UsageError(f"{path_text(path)}: container {-neg_seq} recorded no CID for it; "
                                 f"rebuild the container (`ptolemy retry {project.name}`)")
            if stale:
                raise UsageError(f"{path_text(path)} is in container {-neg_seq}, whose CAR is stale ({stale}): "
                                 f"`ptolemy containerize {project.name} --reset --discard-built` and build again")
            chosen.append(Piece(CID.parse(cid).to_bytes(), offset, length))
            pos = offset + length
            if kind == "symlink" or pos >= size or length == 0:
                break
        if kind == "file" and pos != size:
            raise UsageError(f"{path_text(path)} has {size} bytes but its items cover {pos}: "
                             f"`ptolemy containerize {project.name}` and build first")
        entries.append(DatasetEntry(path, kind, size, tuple(chosen), target_len))
        ids[path] = fid
    for (path,) in Directory.select(Directory.path).where(Directory.project == project).tuples().iterator():
        if path:
            entries.append(DatasetEntry(bytes(path), "dir"))
    return entries, ids


def build_dag(project: Project | str) -> dict[str, Any]:
    """Write and record the project's dataset DAG CAR; the report's keys are ROOT_KEYS plus project,
    previous_root and unchanged."""
    from ptolemy_tui.core.commp import CommP

    project = _project(project)
    _require_built(project)
    started = time.monotonic()
    entries, ids = dataset_entries(project)
    version = project.car_version or 1
    folder = os.path.join(project.staging_dir, project.name)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {folder}: {exc.strerror}") from None
    part = os.path.join(folder, "dataset-dag.car.part")
    hasher = CommP(deferred_prefix=carv2.PREFIX_LENGTH if version == 2 else CARV1_HEADER_LENGTH)
    made: dict[str, Any] = {}

    def write_v1(out, sink):
        car, dag = write_dataset_car(entries, out, profile=project.profile, shard_size=project.shard_size, sink=sink)
        made["dag"] = dag
        return car

    try:
        with open(part, "w+b") as out:
            car = carv2.wrap_blocks_v2(out, write_v1, hasher) if version == 2 else write_v1(out, hasher)
            os.fsync(out.fileno())
        piece = hasher.digest()
        final = os.path.join(folder, f"{piece.piece_cid_v1}.car")
        os.rename(part, final)
    except ValueError as exc:  # entries that do not make a tree (should not happen for a scanned project)
        raise UsageError(f"cannot build the dataset DAG of {project.name}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot write the DAG CAR in {folder}: {exc.strerror or exc}") from None
    finally:
        hasher.close()
        if os.path.exists(part):
            os.unlink(part)
    dag = made["dag"]
    seconds = time.monotonic() - started
    previous = current_root(project)
    fields = dict(root_cid=str(car.root_cid), path=final, piece_cid=piece.piece_cid_v1,
                  piece_cid_v2=piece.piece_cid_v2, car_size=car.car_size, padded_piece_size=piece.padded_piece_size,
                  car_version=version, blocks=car.block_count,
                  files=sum(1 for e in entries if e.kind != "dir"), sharded_files=len(dag.whole_files),
                  bytes=sum(e.size for e in entries if e.kind == "file"), seconds=round(seconds, 3),
                  host=socket.gethostname())
    unchanged = previous is not None and previous.root_cid == fields["root_cid"] and \
        previous.piece_cid == fields["piece_cid"]
    if unchanged:
        root = previous
    else:
        with database.atomic():
            root = DatasetRoot.create(project=project, **fields)
            rows = [dict(dataset_root=root.id, file=ids.get(path), path=path, cid=str(CID.decode(cid)[0]))
                    for path, cid in dag.whole_files.items()]
            for start in range(0, len(rows), 500):
                DatasetFile.insert_many(rows[start:start + 500]).execute()
        events.record(project, f"dataset root {root.root_cid}: DAG CAR {piece.piece_cid_v1} "
                               f"({car.car_size:,} bytes, {len(dag.whole_files)} sharded file(s) made whole)")
    doc = root_doc(root)
    doc.update(project=project.name, unchanged=unchanged,
               previous_root=_older_root(project, root))
    return doc


def _older_root(project: Project, root: DatasetRoot) -> str | None:
    older = (DatasetRoot.select(DatasetRoot.root_cid).where((DatasetRoot.project == project)
                                                            & (DatasetRoot.id < root.id))
             .order_by(DatasetRoot.id.desc()).first())
    return older.root_cid if older is not None else None


def whole_file_cids(project: Project | int) -> dict[int, str]:
    """file id -> whole-file CID of every sharded file under the current dataset root."""
    root = current_root(project)
    if root is None:
        return {}
    rows = DatasetFile.select(DatasetFile.file, DatasetFile.cid).where(
        (DatasetFile.dataset_root == root) & DatasetFile.file.is_null(False)).tuples()
    return {fid: cid for fid, cid in rows.iterator()}
