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
from ptolemy_tui.core.display import json_name_fields
from ptolemy_tui.store.models import Car, CarEntry, Container, ContainerItem, File, Meta, Project

CAR_KEYS = ("container", "payload_cid", "piece_cid", "piece_cid_v2", "car_size", "padded_piece_size", "path",
            "stale", "stale_reason", "kind")
# One row per CAR with what a deal tool needs. payload_cid, commp, size and padded_size are the seed's
# carfile_meta keys, kept under those names so existing deal scripts read the manifest unchanged.
# `stale`: a source file of the CAR changed or went away after the build (a rescan found it), so the CAR no
# longer matches the tree; `containerize` repacks those files and `build` makes fresh CARs of them.
# kind: data (a container CAR) or dag (the DAG CAR of the dataset root, `ptolemy dag`); dataset_root: that root.
MANIFEST_KEYS = ("file_name", "payload_cid", "commp", "piece_cid_v2", "size", "padded_size", "path", "container",
                 "stale", "kind", "dataset_root")
# path_hex / source_hex: the exact bytes, present (JSON) only when the name is not plain printable UTF-8.
BASE_URL_KEY = "serve_base_url"  # in Meta: the public URL `ptolemy serve --base-url` was last given
# whole_cid: a shard's whole-file CID in the current dataset root.
FILE_KEYS = ("path", "cid", "car", "payload_cid", "container", "source", "offset", "length", "shard_index",
             "whole_cid")


def _project(project: Project | str) -> Project:
    return projects.get(project) if isinstance(project, str) else project


def _cars(project: Project):
    return (Car.select(Car, Container.seq).join(Container).where(Car.project == project.id)
            .order_by(Container.seq))


def list_cars(project: Project | str) -> list[dict[str, Any]]:
    """The data CARs in container order, then the DAG CAR of the current dataset root (when there is one)."""
    from ptolemy_tui.services import dag

    project = _project(project)
    rows = [{"container": car.container.seq, "payload_cid": car.payload_cid, "piece_cid": car.piece_cid,
             "piece_cid_v2": car.piece_cid_v2, "car_size": car.car_size, "padded_piece_size": car.padded_piece_size,
             "path": car.path, "host": car.host, "built_at": car.built_at, "seconds": car.seconds,
             "stale": car.stale_reason is not None, "stale_reason": car.stale_reason, "kind": "data"}
            for car in _cars(project)]
    root = dag.current_root(project)
    if root is not None:
        rows.append({"container": None, "payload_cid": root.root_cid, "piece_cid": root.piece_cid,
                     "piece_cid_v2": root.piece_cid_v2, "car_size": root.car_size,
                     "padded_piece_size": root.padded_piece_size, "path": root.path, "host": root.host,
                     "built_at": root.created_at, "seconds": root.seconds, "stale": False, "stale_reason": None,
                     "kind": "dag"})
    return rows


def stale_counts(project: Project | str) -> dict[str, int]:
    """stale: built CARs whose sources changed; unrepacked: those whose files containerize has not packed
    again yet (their container still holds its items)."""
    project = _project(project)
    ids = [c for (c,) in Car.select(Car.container).where(
        (Car.project == project.id) & Car.stale_reason.is_null(False)).tuples()]
    unrepacked = sum(ContainerItem.select(ContainerItem.container).where(ContainerItem.container.in_(part))
                     .distinct().count() for part in (ids[i:i + 500] for i in range(0, len(ids), 500)))
    return {"stale": len(ids), "unrepacked": unrepacked}


def set_base_url(url: str) -> None:
    Meta.insert(key=BASE_URL_KEY, value=url).on_conflict(
        conflict_target=[Meta.key], update={Meta.value: url}).execute()


def base_url() -> str | None:
    row = Meta.get_or_none(Meta.key == BASE_URL_KEY)
    return row.value if row else None


def manifest_rows(project: Project | str, *, exclude_stale: bool = False,
                  base: str | None = None) -> list[dict[str, Any]]:
    """One row per CAR; with a base URL, `url` is where `ptolemy serve` hands the piece out.
    An inline CAR has no file: its file_name is what `car export` would name it, its path is empty."""
    rows = []
    cars = list_cars(project)
    root = next((c["payload_cid"] for c in cars if c["kind"] == "dag"), None)
    for c in cars:
        if exclude_stale and c["stale"]:
            continue
        row = {"file_name": os.path.basename(c["path"]) or f"{c['piece_cid']}.car", "payload_cid": c["payload_cid"],
               "commp": c["piece_cid"], "piece_cid_v2": c["piece_cid_v2"], "size": c["car_size"],
               "padded_size": c["padded_piece_size"], "path": c["path"], "container": c["container"],
               "stale": c["stale"], "kind": c["kind"], "dataset_root": root}
        if base:
            row["url"] = f"{base.rstrip('/')}/piece/{c['piece_cid']}"
        rows.append(row)
    return rows


def manifest(project: Project | str, fmt: str = "csv", *, exclude_stale: bool = False,
             base: str | None = None) -> str:
    """The manifest as CSV (header row, one line per CAR) or one JSON document. `base`: the serve base URL
    (default: the one `ptolemy serve --base-url` recorded); with one, every row gets a `url`."""
    project = _project(project)
    base = base or base_url()
    rows = manifest_rows(project, exclude_stale=exclude_stale, base=base)
    if fmt == "json":
        root = next((r["payload_cid"] for r in rows if r["kind"] == "dag"), None)
        return json.dumps({"project": project.name, "dataset_root": root, "cars": rows}, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(MANIFEST_KEYS) + (["url"] if base else []),
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    raise UsageError(f"--format {fmt!r} is unknown: use csv or json")


def iter_files(project: Project | str) -> Iterator[dict[str, Any]]:
    """Every entry of every CAR (a whole file, or shard N of one): its path in the CAR, its CID and its CAR;
    a shard's whole_cid is its whole file's CID in the current dataset root (`ptolemy dag`)."""
    from ptolemy_tui.services import dag

    project = _project(project)
    whole = dag.whole_file_cids(project)
    query = (CarEntry.select(CarEntry.path, CarEntry.cid, Car.path, Car.payload_cid, Container.seq, File.path,
                             CarEntry.offset, CarEntry.length, ContainerItem.shard_index, CarEntry.file)
             .join(Car).join(Container)
             .switch(CarEntry).join(File, peewee.JOIN.LEFT_OUTER, on=(CarEntry.file == File.id))
             .join(ContainerItem, peewee.JOIN.LEFT_OUTER,
                   on=((ContainerItem.container == Container.id) & (ContainerItem.car_path == CarEntry.path)))
             .where(Car.project == project.id)
             .order_by(Container.seq, CarEntry.id))
    for path, cid, car_path, payload, seq, source, offset, length, shard, fid in query.tuples().iterator():
        row = json_name_fields(path, "path")
        row.update(cid=cid, car=os.path.basename(car_path), payload_cid=payload, container=seq)
        row.update(json_name_fields(source, "source"))
        row.update(offset=offset, length=length, shard_index=shard,
                   whole_cid=whole.get(fid) if shard is not None else None)
        yield row


def list_files(project: Project | str) -> list[dict[str, Any]]:
    return list(iter_files(project))


def car_location(path: str, where: str | None = None) -> tuple[str, str]:
    """Where a CAR is now and what became of it: ("staging" | "moved" | "elsewhere" | "missing", path).

    CARs leave staging once finished (the operator moves them to their deal storage): a CAR no longer at its
    recorded path is "moved", not bad. `where` names the directory it went to (same file name)."""
    if where:
        found = os.path.join(where, os.path.basename(path))
        if os.path.exists(found):
            return "elsewhere", found
        return ("staging", path) if os.path.exists(path) else ("missing", found)
    return ("staging", path) if os.path.exists(path) else ("moved", path)


def verify(project: Project | str, where: str | None = None) -> list[dict[str, Any]]:
    """Re-read every CAR: block hashes and DAG completeness, the root CID and the piece CID against the record.

    Two reads per CAR (the block check, then CommP): verification is an audit, not the hot path. A CAR gone from
    staging is reported `moved` (ok None, not verified); `where` verifies the CARs in that directory instead.
    An inline CAR is regenerated from its plan. The current DAG CAR comes last (container None).
    """
    from ptolemy_tui.services import dag

    project = _project(project)
    results = [_check_car(project, car.container.seq, car, partial=False, where=where) for car in _cars(project)]
    root = dag.current_root(project)
    if root is not None:  # the DAG CAR links into the data CARs by design: checked as a partial CAR
        root.payload_cid = root.root_cid
        results.append(_check_car(project, None, root, partial=True, where=where))
    return results


def _check_car(project: Project, container: int | None, car, *, partial: bool,
               where: str | None) -> dict[str, Any]:
    """One recorded CAR (a Car or a DatasetRoot row: path, car_size, payload_cid, piece_cid, piece_cid_v2)."""
    from ptolemy_tui.core import carread
    from ptolemy_tui.core.commp import commp_of_file

    problems: list[str] = []
    stale_reason = getattr(car, "stale_reason", None)
    doc = {"container": container, "path": car.path, "payload_cid": car.payload_cid, "piece_cid": car.piece_cid,
           "stale": stale_reason is not None, "stale_reason": stale_reason}
    if not car.path:  # an inline CAR: regenerated from its plan and sources (every leaf re-hashed), CommP'd
        from ptolemy_tui.services import pieces

        problems = pieces.verify_inline(car.piece_cid, project.id)
        return doc | {"ok": not problems, "problems": problems}
    location, path = car_location(car.path, where)
    doc["location"], doc["path"] = location, path
    if location == "moved":
        return doc | {"ok": None, "problems": [f"not in staging any more (moved?): verify it where it "
                                               f"is with `ptolemy verify {project.name} --where DIR`"]}
    if location == "missing":
        return doc | {"ok": False, "problems": [f"not found in {where} nor in staging"]}
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return doc | {"ok": False, "problems": [f"cannot read the CAR: {exc.strerror}"]}
    if size != car.car_size:
        problems.append(f"size {size:,} bytes, recorded {car.car_size:,}")
    try:
        report = carread.verify(path, partial=partial)
        roots = [str(r) for r in report.roots]
        if roots != [car.payload_cid]:
            problems.append(f"root {', '.join(roots) or 'none'}, recorded {car.payload_cid}")
    except carread.CarFormatError as exc:
        problems.append(f"bad CAR: {exc}")
    except OSError as exc:
        problems.append(f"cannot read the CAR: {exc.strerror}")
    try:
        piece = commp_of_file(path)
        if piece.piece_cid_v1 != car.piece_cid:
            problems.append(f"piece CID {piece.piece_cid_v1}, recorded {car.piece_cid}")
        if car.piece_cid_v2 and piece.piece_cid_v2 != car.piece_cid_v2:
            problems.append(f"piece CID v2 {piece.piece_cid_v2}, recorded {car.piece_cid_v2}")
    except OSError as exc:
        problems.append(f"cannot read the CAR: {exc.strerror}")
    return doc | {"ok": not problems, "problems": problems}
