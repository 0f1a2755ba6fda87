"""The scan view's tree: the children of one directory with their aggregates, sorted and paged.

Each page is one indexed query (directory children by (project, parent), files by (project, directory)) over a
UNION ALL, so opening a directory costs the same at any scale; aggregates were computed by the scan.
"""
from __future__ import annotations

import peewee

from ptolemy_tui.errors import UsageError
from ptolemy_tui.store.fields import path_text
from ptolemy_tui.store.models import Directory, File, Project
from ptolemy_tui.store.queries import bytes_contain

SORTS = ("size", "name")


def root_directory(project: Project) -> Directory | None:
    return Directory.get_or_none((Directory.project == project) & (Directory.path == b""))


def directory(project: Project, directory_id: int | None) -> Directory:
    d = (root_directory(project) if directory_id is None else
         Directory.get_or_none((Directory.id == directory_id) & (Directory.project == project)))
    if d is None:
        raise UsageError(f"project {project.name} has no directory {directory_id if directory_id else '(root)'}: "
                         f"scan it first with `ptolemy scan {project.name}`")
    return d


def _as_dict(d: Directory) -> dict:
    return {"id": d.id, "kind": "dir", "name": path_text(d.name), "path": path_text(d.path),
            "size": d.total_bytes, "files": d.total_files, "file_count": d.file_count, "dir_count": d.dir_count,
            "parent_id": d.parent_id, "error": d.error}


def describe(project: Project, directory_id: int | None) -> dict:
    """One directory's own aggregates (the header of the tree view)."""
    return _as_dict(directory(project, directory_id))


def children(project: Project, directory_id: int | None, *, sort: str = "size", offset: int = 0,
             limit: int = 200, text: str = "", after: tuple | None = None) -> list[dict]:
    """Directories and files directly inside `directory_id` (the root when None), biggest or A-Z first.

    Rows: id, kind (dir, file, symlink, special, error, removed), name, path, size (a directory's total regular
    bytes below it), files (regular files below; 1 for a file), file_count and dir_count (a directory's direct
    entries), error, link_target, file_kind (the kind again for non-directories, None for directories), and
    cursor: the row's sort key. The next page is `after=` the last row's cursor (keyset paging: the store
    seeks to it instead of counting past `offset` rows, so the millionth row of a wide directory costs what
    the first does); `offset` remains for callers that jump.
    """
    if sort not in SORTS:
        raise UsageError(f"unknown sort {sort!r}: use size or name")
    parent = directory(project, directory_id)
    dirs = (Directory.select(Directory.id.alias("id"), peewee.Value("dir").alias("kind"), Directory.name.alias("name"),
                             Directory.path.alias("path"), Directory.total_bytes.alias("size"),
                             Directory.total_files.alias("files"), Directory.file_count.alias("file_count"),
                             Directory.dir_count.alias("dir_count"), Directory.error.alias("error"),
                             peewee.Value(None).alias("link_target"))
            .where((Directory.project == project) & (Directory.parent == parent.id)))
    files = (File.select(File.id, File.kind, File.name, File.path, File.size,
                         peewee.Case(None, [(File.kind == "file", 1)], 0), peewee.Value(0), peewee.Value(0),
                         File.error, File.link_target)
             .where((File.project == project) & (File.directory == parent.id)))
    if text:  # the view's filter: files whose name contains the text; directories stay, to be opened
        files = files.where(bytes_contain(File.name, text.encode("utf-8", "surrogateescape")))
    if after is not None:  # names are unique in a directory, so (size, name) and name are total orders
        if sort == "size":
            size, name = after
            dirs = dirs.where((Directory.total_bytes < size) | ((Directory.total_bytes == size) & (Directory.name > name)))
            files = files.where((File.size < size) | ((File.size == size) & (File.name > name)))
        else:
            (name,) = after
            dirs = dirs.where(Directory.name > name)
            files = files.where(File.name > name)
    union = dirs + files  # UNION ALL
    if sort == "size":
        order = (peewee.SQL("size").desc(), peewee.SQL("name"))
    else:
        order = (peewee.SQL("name"), peewee.SQL("kind"))
    query = union.order_by(*order).limit(max(1, min(limit, 10000)))
    if offset and after is None:
        query = query.offset(offset)
    out = []
    for row in query.dicts():
        raw = bytes(row["name"])
        row["cursor"] = (int(row["size"] or 0), raw) if sort == "size" else (raw,)
        row["name"] = path_text(raw)
        row["path"] = path_text(bytes(row["path"]))
        row["link_target"] = path_text(bytes(row["link_target"])) if row["link_target"] is not None else None
        row["file_kind"] = None if row["kind"] == "dir" else row["kind"]
        out.append(row)
    return out


def scan_errors(project: Project, limit: int = 200) -> list[dict]:
    """Entries the scan could not read, directories first (an unreadable directory hides its whole subtree)."""
    out = [{"path": path_text(bytes(path)), "kind": "dir", "error": error}
           for path, error in Directory.select(Directory.path, Directory.error)
           .where((Directory.project == project) & Directory.error.is_null(False))
           .order_by(Directory.path).limit(limit).tuples()]
    if len(out) < limit:
        out += [{"path": path_text(bytes(path)), "kind": "file", "error": error}
                for path, error in File.select(File.path, File.error)
                .where((File.project == project) & (File.kind == "error"))
                .order_by(File.path).limit(limit - len(out)).tuples()]
    return out


def skipped(project: Project, limit: int = 200) -> list[dict]:
    """Sockets, FIFOs and devices: recorded, never packed."""
    return [{"path": path_text(bytes(path)), "reason": error}
            for path, error in File.select(File.path, File.error)
            .where((File.project == project) & (File.kind == "special")).order_by(File.path).limit(limit).tuples()]
