"""Reading a UnixFS DAG back: directories (plain and HAMT), files (any layout, raw or dag-pb leaves, inline data)
and symlinks, from any `get(cid) -> bytes | None` block source. Pure: no file system access.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from ptolemy_tui.core import dagpb
from ptolemy_tui.core.multiformats import CID, CODEC_DAG_PB, CODEC_RAW, FormatError

Get = Callable[[CID], "bytes | None"]


class MissingBlock(Exception):
    def __init__(self, cid: CID, path: bytes):
        super().__init__(f"missing block {cid}")
        self.cid = cid
        self.path = path


class BadDag(Exception):
    """A block that is not the UnixFS this reader expects there, or an unsafe name."""


@dataclass
class Node:
    path: bytes      # relative to the root; b"" for the root itself
    kind: str        # "dir", "file" or "symlink"
    cid: CID
    target: bytes = b""   # symlink target


def _decode(cid: CID, data: bytes, path: bytes) -> tuple[dagpb.PBNode, dagpb.UnixFSData]:
    try:
        node = dagpb.decode_node(data)
        return node, dagpb.decode_unixfs(node.data or b"")
    except FormatError as exc:
        raise BadDag(f"block {cid} at {path!r} is not UnixFS: {exc}") from None


def _need(get: Get, cid: CID, path: bytes) -> bytes:
    data = get(cid)
    if data is None:
        raise MissingBlock(cid, path)
    return data


def safe_name(name: bytes, where: bytes) -> bytes:
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise BadDag(f"unsafe entry name {name!r} under {where or b'.'!r}")
    return name


def classify(cid: CID, get: Get, path: bytes) -> tuple[str, dagpb.PBNode | None, dagpb.UnixFSData | None]:
    """("file", …) for raw blocks and UnixFS files; ("dir"|"hamt"|"symlink", node, data) otherwise."""
    if cid.codec == CODEC_RAW:
        return "file", None, None
    if cid.codec != CODEC_DAG_PB:
        raise BadDag(f"block {cid} at {path!r} is codec 0x{cid.codec:x}, not UnixFS")
    node, fs = _decode(cid, _need(get, cid, path), path)
    kind = {dagpb.UNIXFS_DIRECTORY: "dir", dagpb.UNIXFS_HAMT_SHARD: "hamt", dagpb.UNIXFS_SYMLINK: "symlink",
            dagpb.UNIXFS_FILE: "file", dagpb.UNIXFS_RAW: "file"}.get(fs.kind)
    if kind is None:
        raise BadDag(f"block {cid} at {path!r} has UnixFS type {fs.kind}, which cannot be restored")
    return kind, node, fs


def dir_entries(node: dagpb.PBNode, fs: dagpb.UnixFSData, get: Get, path: bytes) -> list[tuple[bytes, CID]]:
    """(name, cid) of a directory's entries; a HAMT's shards are followed (name order is not guaranteed)."""
    if fs.kind == dagpb.UNIXFS_DIRECTORY:
        return [(safe_name(link.name or b"", path), link.cid) for link in node.links]
    pad = len(f"{(fs.fanout or 256) - 1:X}")
    out = []
    todo = list(reversed(node.links))
    while todo:
        link = todo.pop()
        name = link.name or b""
        if len(name) > pad:
            out.append((safe_name(name[pad:], path), link.cid))
            continue
        sub, _ = _decode(link.cid, _need(get, link.cid, path), path)
        todo.extend(reversed(sub.links))
    return out


def walk(root: CID, get: Get, on_missing: Callable[[MissingBlock], None] | None = None) -> Iterator[Node]:
    """Every node under root, a directory before its entries. Raises BadDag, and MissingBlock unless
    on_missing is given (then the node whose block is missing is reported there and skipped)."""
    stack: list[tuple[bytes, CID]] = [(b"", root)]
    while stack:
        path, cid = stack.pop()
        try:
            kind, node, fs = classify(cid, get, path)
            entries = dir_entries(node, fs, get, path) if kind in ("dir", "hamt") else None
        except MissingBlock as exc:
            if on_missing is None:
                raise
            on_missing(exc)
            continue
        if kind == "symlink":
            yield Node(path, "symlink", cid, fs.data or b"")
        elif kind == "file":
            yield Node(path, "file", cid)
        else:
            yield Node(path, "dir", cid)
            prefix = path + b"/" if path else b""
            for name, child in reversed(entries):
                stack.append((prefix + name, child))


def file_data(cid: CID, get: Get, path: bytes, has: Callable[[CID], bool] | None = None) -> Iterator[bytes]:
    """The file's bytes, block by block. With `has`, raw leaves are only checked for presence, not read
    (yielding b""), so the whole file can be checked while reading only its internal nodes."""
    stack = [cid]
    while stack:
        c = stack.pop()
        if c.codec == CODEC_RAW:
            if has is not None:
                if not has(c):
                    raise MissingBlock(c, path)
                continue
            yield _need(get, c, path)
            continue
        if c.codec != CODEC_DAG_PB:
            raise BadDag(f"block {c} in file {path!r} is codec 0x{c.codec:x}")
        node, fs = _decode(c, _need(get, c, path), path)
        if fs.kind not in (dagpb.UNIXFS_FILE, dagpb.UNIXFS_RAW):
            raise BadDag(f"block {c} in file {path!r} has UnixFS type {fs.kind}, not a file")
        if fs.data and has is None:
            yield fs.data
        stack.extend(link.cid for link in reversed(node.links))
