"""What a build produced: the CARs, a manifest for deal tools, the file name ↔ CID map, and re-verification."""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, Iterator

import peewee

from ptolemy_tui.errors import UsageError
from ptolemy_tui.services import projects
from ptolemy_tui.store.fields import path_text
from ptolemy_tui.store.models import Car, CarEntry, Container, ContainerItem, File, Project

CAR_KEYS = ("container", "payload_cid", "piece_cid", "piece_cid_v2", "car_size", "padded_piece_size", "path")
# One row per CAR with what a deal tool needs. payload_cid, commp, size and padded_size are the seed's
# carfile_meta keys, kept under those names so existing deal scripts read the manifest unchanged.
MANIFEST_KEYS = ("file_name", "payload_cid", "commp", "piece_cid_v2", "size", "padded_size", "path", "container")
FILE_KEYS = ("path", "cid", "car", "payload_cid", "container", "source", "offset", "length", "shard_index")


def _project(project: Project | str) -> Project:
    return projects.get(project) if isinstance(project, str) else project


def _cars(project: Project):
    return (Car.select(Car, Container.seq).join(Container).where(Car.project == project.id)
            .order_by(Container.seq))


def list_cars(project: Project | str) -> list[dict[str, Any]]:
    project = _project(project)
    return [{"container": car.container.seq, "payload_cid": car.payload_cid, "piece_cid": car.piece_cid,
             "piece_cid_v2": car.piece_cid_v2, "car_size": car.car_size, "padded_piece_size": car.padded_piece_size,
             "path": car.path, "host": car.host, "built_at": car.built_at, "seconds": car.seconds}
            for car in _cars(project)]


def manifest_rows(project: Project | str) -> list[dict[str, Any]]:
    return [{"file_name": os.path.basename(c["path"]), "payload_cid": c["payload_cid"], "commp": c["piece_cid"],
             "piece_cid_v2": c["piece_cid_v2"], "size": c["car_size"], "padded_size": c["padded_piece_size"],
             "path": c["path"], "container": c["container"]} for c in list_cars(project)]


def manifest(project: Project | str, fmt: str = "csv") -> str:
    """The manifest as CSV (header row, one line per CAR) or one JSON document."""
    project = _project(project)
    rows = manifest_rows(project)
    if fmt == "json":
        return json.dumps({"project": project.name, "cars": rows}, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(MANIFEST_KEYS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    raise UsageError(f"--format {fmt!r} is unknown: use csv or json")


def iter_files(project: Project | str) -> Iterator[dict[str, Any]]:
    """Every entry of every CAR (a whole file, or shard N of one): its path in the CAR, its CID and its CAR."""
    project = _project(project)
    query = (CarEntry.select(CarEntry.path, CarEntry.cid, Car.path, Car.payload_cid, Container.seq, File.path,
                             CarEntry.offset, CarEntry.length, ContainerItem.shard_index)
             .join(Car).join(Container)
             .switch(CarEntry).join(File, peewee.JOIN.LEFT_OUTER, on=(CarEntry.file == File.id))
             .join(ContainerItem, peewee.JOIN.LEFT_OUTER,
                   on=((ContainerItem.container == Container.id) & (ContainerItem.car_path == CarEntry.path)))
             .where(Car.project == project.id)
             .order_by(Container.seq, CarEntry.id))
    for path, cid, car_path, payload, seq, source, offset, length, shard in query.tuples().iterator():
        yield {"path": path_text(path), "cid": cid, "car": os.path.basename(car_path), "payload_cid": payload,
               "container": seq, "source": path_text(source) if source is not None else None,
               "offset": offset, "length": length, "shard_index": shard}


def list_files(project: Project | str) -> list[dict[str, Any]]:
    return list(iter_files(project))


def verify(project: Project | str) -> list[dict[str, Any]]:
    """Re-read every CAR: block hashes and DAG completeness, the root CID and the piece CID against the record.

    Two reads per CAR (the block check, then CommP): verification is an audit, not the hot path.
    """
    from ptolemy_tui.core import carread
    from ptolemy_tui.core.commp import commp_of_file

    project = _project(project)
    results = []
    for car in _cars(project):
        problems: list[str] = []
        doc = {"container": car.container.seq, "path": car.path, "payload_cid": car.payload_cid,
               "piece_cid": car.piece_cid}
        try:
            size = os.path.getsize(car.path)
        except OSError as exc:
            results.append(doc | {"ok": False, "problems": [f"cannot read the CAR: {exc.strerror}"]})
            continue
        if size != car.car_size:
            problems.append(f"size {size:,} bytes, recorded {car.car_size:,}")
        try:
            report = carread.verify(car.path)
            roots = [str(r) for r in report.roots]
            if roots != [car.payload_cid]:
                problems.append(f"root {', '.join(roots) or 'none'}, recorded {car.payload_cid}")
        except carread.CarFormatError as exc:
            problems.append(f"bad CAR: {exc}")
        except OSError as exc:
            problems.append(f"cannot read the CAR: {exc.strerror}")
        try:
            piece = commp_of_file(car.path)
            if piece.piece_cid_v1 != car.piece_cid:
                problems.append(f"piece CID {piece.piece_cid_v1}, recorded {car.piece_cid}")
            if car.piece_cid_v2 and piece.piece_cid_v2 != car.piece_cid_v2:
                problems.append(f"piece CID v2 {piece.piece_cid_v2}, recorded {car.piece_cid_v2}")
        except OSError as exc:
            problems.append(f"cannot read the CAR: {exc.strerror}")
        results.append(doc | {"ok": not problems, "problems": problems})
    return results
