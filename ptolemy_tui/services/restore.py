"""Restore: the tree under a root CID, written back from any set of CAR files (ours or anyone's, v1 or v2).

Two passes over the DAG. The first reads only directories and internal file nodes and checks that every leaf
is present, so a missing CAR is reported (file and CID) before anything is written. The second writes: each
file goes to a temporary name in its directory and is renamed when complete, so a final name always holds the
whole file; every block read is checked against its CID. Names are bytes end to end (non-UTF-8 names survive).
No store is needed: everything comes from the CARs.
"""
from __future__ import annotations

import os
import secrets
import stat
import time
from dataclasses import dataclass, field
from typing import Callable

from ptolemy_tui.core import unixfs_read
from ptolemy_tui.core.carindex import BlockIndex, CarInfo
from ptolemy_tui.core.carread import CarFormatError, block_hash_ok
from ptolemy_tui.core.multiformats import CID, FormatError
from ptolemy_tui.errors import OperationFailed, UsageError

TEMP_PREFIX = b".ptolemy-restore-"
COMPARE_CHUNK = 4 * 1024 * 1024


@dataclass
class RestoreReport:
    root: str
    to: str
    cars: int = 0
    blocks: int = 0
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    bytes: int = 0
    seconds: float = 0.0
    root_from: str = ""                  # "--root", "the only root", "the dataset DAG CAR"
    differences: list[str] = field(default_factory=list)
    compared: int = 0

    def to_json(self) -> dict:
        return {"root": self.root, "to": self.to, "root_from": self.root_from, "cars": self.cars,
                "blocks": self.blocks, "files": self.files, "directories": self.directories,
                "symlinks": self.symlinks, "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "compared": self.compared, "differences": self.differences}


def _text(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace") or "."


def car_inputs(inputs: list[str]) -> list[str]:
    """CAR files named directly, and every *.car file under the directories named (sorted)."""
    out: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = []
            for root, _dirs, files in os.walk(item):
                found.extend(os.path.join(root, f) for f in files if f.endswith(".car"))
            if not found:
                raise UsageError(f"no .car files in {item}: name CAR files or a directory holding them")
            out.extend(sorted(found))
        elif os.path.exists(item):
            out.append(item)
        else:
            raise UsageError(f"no such CAR file or directory: {item}")
    if not out:
        raise UsageError("name at least one CAR file or directory of CAR files")
    return out


def _check_target(to: str) -> None:
    if os.path.lexists(to):
        if not os.path.isdir(to) or os.path.islink(to):
            raise UsageError(f"--to {to} exists and is not a directory: restore into a new or empty directory")
        if os.listdir(to):
            raise UsageError(f"--to {to} is not empty: restore into a new or empty directory")
    else:
        parent = os.path.dirname(os.path.abspath(to))
        if not os.path.isdir(parent):
            raise UsageError(f"--to {to}: its parent directory {parent} does not exist")


def open_index(paths: list[str]) -> BlockIndex:
    index = BlockIndex()
    try:
        for path in paths:
            try:
                index.add(path)
            except CarFormatError as exc:
                raise OperationFailed(f"{path} is not a readable CAR: {exc}") from None
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except BaseException:
        index.close()
        raise
    return index


def choose_root(index: BlockIndex, root: str | None) -> tuple[CID, str]:
    """--root when given; else the only root of the set; else the root of the one dataset DAG CAR (a CAR of
    dag-pb blocks only, whose root links outside itself)."""
    if root is not None:
        try:
            cid = CID.parse(root)
        except FormatError:
            raise UsageError(f"--root {root!r} is not a CID") from None
        return cid, "--root"
    roots = {r.to_bytes(): r for car in index.cars for r in car.roots}
    if len(roots) == 1:
        return next(iter(roots.values())), "the only root"
    candidates = [car for car in index.cars if len(car.roots) == 1 and car.only_dag_pb and _links_outside(index, car)]
    if len(candidates) == 1 and len(candidates[0].roots) == 1:
        return candidates[0].roots[0], "the dataset DAG CAR"
    shown = ", ".join(str(r) for r in list(roots.values())[:3]) + (" …" if len(roots) > 3 else "")
    raise UsageError(f"{len(roots)} different roots and no dataset DAG CAR among the CARs: pass --root CID "
                     f"(roots: {shown or 'none'})")


def _links_outside(index: BlockIndex, car: CarInfo) -> bool:
    """Whether the DAG under the CAR's root reaches a block that is not in that CAR (the DAG CAR's files are
    in the data CARs; a self-contained CAR is not a DAG CAR). Stops at the first such link."""
    from ptolemy_tui.core import dagpb

    todo = [car.roots[0]]
    seen: set[bytes] = set()
    while todo:
        cid = todo.pop()
        if cid.multihash in seen:
            continue
        seen.add(cid.multihash)
        if index.car_path(cid) != car.path:
            return True
        if cid.codec != 0x70:
            continue
        try:
            todo.extend(link.cid for link in dagpb.decode_node(index.get(cid) or b"").links)
        except FormatError:
            continue
    return False


def _checked_get(index: BlockIndex, report: RestoreReport) -> Callable[[CID], bytes | None]:
    def get(cid: CID) -> bytes | None:
        data = index.get(cid)
        if data is not None:
            if block_hash_ok(cid, data) is False:
                raise OperationFailed(f"block {cid} in {os.fsdecode(index.car_path(cid))} does not match its CID")
            report.blocks += 1
        return data
    return get


def find_missing(root: CID, index: BlockIndex, limit: int = 1000) -> list[tuple[bytes, CID]]:
    """(path, CID) of every file or directory whose DAG is not complete in the index (up to limit)."""
    missing: list[tuple[bytes, CID]] = []
    for node in unixfs_read.walk(root, index.get, lambda exc: missing.append((exc.path, exc.cid))):
        if node.kind == "file":
            try:
                for _ in unixfs_read.file_data(node.cid, index.get, node.path, has=index.__contains__):
                    pass
            except unixfs_read.MissingBlock as exc:
                missing.append((node.path, exc.cid))
        if len(missing) >= limit:
            break
    return missing


def _missing_message(missing: list[tuple[bytes, CID]]) -> str:
    path, cid = missing[0]
    text = f"missing block {cid} for {_text(path)}"
    if len(missing) > 1:
        others = ", ".join(_text(p) for p, _ in missing[1:4])
        text += f"; {len(missing) - 1} more affected: {others}{' …' if len(missing) > 4 else ''}"
    return text + " (add the CAR that holds it)"


def restore(inputs: list[str], to: str, *, root: str | None = None, verify_against: str | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> RestoreReport:
    """Write the tree under the root into `to` (new or empty). Raises UsageError / OperationFailed."""
    started = time.monotonic()
    paths = car_inputs(inputs)
    _check_target(to)
    if verify_against is not None and not os.path.isdir(verify_against):
        raise UsageError(f"--verify-against {verify_against} is not a directory")
    with open_index(paths) as index:
        cid, source = choose_root(index, root)
        report = RestoreReport(str(cid), to, cars=len(paths), root_from=source)
        if cid not in index:
            raise OperationFailed(f"the root {cid} is in none of the {len(paths)} CAR(s)")
        try:
            missing = find_missing(cid, index)
        except unixfs_read.BadDag as exc:
            raise OperationFailed(f"cannot restore: {exc}") from None
        if missing:
            raise OperationFailed(_missing_message(missing))
        _write(cid, index, to, report, on_progress)
    if verify_against is not None:
        compare_trees(to, verify_against, report)
    report.seconds = time.monotonic() - started
    return report


def _write(root: CID, index: BlockIndex, to: str, report: RestoreReport,
           on_progress: Callable[[int, int], None] | None) -> None:
    get = _checked_get(index, report)
    base = os.fsencode(to)
    os.makedirs(base, exist_ok=True)
    try:
        for node in unixfs_read.walk(root, get):
            if node.path == b"" and node.kind != "dir":
                node.path = str(root).encode()  # a root that is a file or symlink is written under its CID
            final = os.path.join(base, node.path) if node.path else base
            if node.kind == "dir":
                if node.path:
                    os.mkdir(final)
                report.directories += 1
                continue
            temp = os.path.join(os.path.dirname(final), TEMP_PREFIX + secrets.token_hex(6).encode())
            try:
                if node.kind == "symlink":
                    os.symlink(node.target, temp)
                    report.symlinks += 1
                else:
                    with open(temp, "xb") as out:
                        for data in unixfs_read.file_data(node.cid, get, node.path):
                            out.write(data)
                            report.bytes += len(data)
                            if on_progress is not None:
                                on_progress(report.files, report.bytes)
                    report.files += 1
                os.rename(temp, final)
            except BaseException:
                try:
                    os.unlink(temp)
                except OSError:
                    pass
                raise
    except unixfs_read.MissingBlock as exc:  # a CAR changed between the check and the write
        raise OperationFailed(_missing_message([(exc.path, exc.cid)])) from None
    except unixfs_read.BadDag as exc:
        raise OperationFailed(f"cannot restore: {exc}") from None
    except CarFormatError as exc:
        raise OperationFailed(f"cannot read a CAR: {exc}") from None
    except OSError as exc:
        where = os.fsdecode(exc.filename) if exc.filename else to
        raise OperationFailed(f"cannot write {where}: {exc.strerror or exc}") from None


def _same_bytes(a: bytes, b: bytes) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(COMPARE_CHUNK)
            y = fb.read(COMPARE_CHUNK)
            if x != y:
                return False
            if not x:
                return True


def compare_trees(restored: str, source: str, report: RestoreReport) -> None:
    """Every entry of both trees: same kind, same bytes (files), same target (symlinks). Differences go to
    report.differences (first 1000); special files in the source are not compared."""
    diffs = report.differences
    top_r, top_s = os.fsencode(restored), os.fsencode(source)

    def note(text: str) -> None:
        if len(diffs) < 1000:
            diffs.append(text)

    for root, dirs, files in os.walk(top_r):
        rel = os.path.relpath(root, top_r)
        rel = b"" if rel == b"." else rel
        names = set(dirs) | set(files)
        try:
            source_names = set(os.listdir(os.path.join(top_s, rel)))
        except OSError:
            source_names = set()
        for name in sorted(source_names - names):
            st = os.lstat(os.path.join(top_s, rel, name))
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
                note(f"only in the source: {_text(os.path.join(rel, name))}")
        for name in sorted(names):
            r = os.path.join(root, name)
            s = os.path.join(top_s, rel, name)
            shown = _text(os.path.join(rel, name))
            try:
                sr, ss = os.lstat(r), os.lstat(s)
            except FileNotFoundError:
                note(f"not in the source: {shown}")
                continue
            report.compared += 1
            if stat.S_IFMT(sr.st_mode) != stat.S_IFMT(ss.st_mode):
                note(f"different kind: {shown}")
            elif stat.S_ISLNK(sr.st_mode):
                if os.readlink(r) != os.readlink(s):
                    note(f"different symlink target: {shown}")
            elif stat.S_ISREG(sr.st_mode):
                if sr.st_size != ss.st_size:
                    note(f"different size: {shown} ({sr.st_size} restored, {ss.st_size} in the source)")
                elif not _same_bytes(r, s):
                    note(f"different bytes: {shown}")
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
