"""Streaming UnixFS importer: a tree of entries in, blocks out in depth-first post-order.

Layout (what kubo `ipfs add --cid-version=1` / the JS importer / go-car `car create` build): CIDv1 sha2-256,
raw leaves of 262144 bytes, balanced file trees with at most 174 links per node, dag-pb directories sorted by
name bytes, HAMT shards past the threshold. Blocks are handed to `put(cid_bytes, block)` the moment they are
complete, which is exactly the post-order of the finished DAG: children before parents, file chunks in file
order, directory entries in link order. Nothing but the current path of open nodes is kept in memory.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from ptolemy_tui.core import dagpb, hamt
from ptolemy_tui.core.multiformats import CODEC_DAG_PB, CODEC_RAW, HASH_SHA2_256

CHUNK_SIZE = 262144
MAX_LINKS = 174
HAMT_THRESHOLD = 262144
CID_LENGTH = 36  # CIDv1 + one-byte codec + sha2-256 multihash: every CID this importer makes

_RAW_PREFIX = bytes((1, CODEC_RAW, HASH_SHA2_256, 32))
_PB_PREFIX = bytes((1, CODEC_DAG_PB, HASH_SHA2_256, 32))
_sha256 = hashlib.sha256


@dataclass(frozen=True)
class SourceEntry:
    """One input of a CAR: a whole file, a byte range of one, an empty directory or a symlink."""

    dag_path: bytes
    source: str | bytes | None = None
    offset: int = 0
    length: int = 0
    kind: str = "file"  # "file" | "dir" | "symlink"
    link_target: bytes = b""


@dataclass(frozen=True)
class Params:
    """DAG shape knobs. Only the two profiles are public; tests shrink chunk/width to reach deep trees."""

    name: str
    collapse_single_child: bool  # go-unixfsnode returns a lone trailing child instead of wrapping it
    chunk_size: int = CHUNK_SIZE
    max_links: int = MAX_LINKS
    hamt_threshold: int = HAMT_THRESHOLD
    # go-car builds its top-level inputs in command-line order (the root block's links are still sorted by
    # dag-pb), so their blocks come in that order; kubo walks every directory in name order
    top_in_given_order: bool = False


PROFILES = {
    "kubo": Params("kubo", collapse_single_child=False),
    "go-car": Params("go-car", collapse_single_child=True, top_in_given_order=True),
}
PUBLIC_PROFILES = tuple(PROFILES)  # what a project or `car create --profile` may name
PROFILES["gocar"] = PROFILES["go-car"]


def get_params(profile: str | Params) -> Params:
    if isinstance(profile, Params):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown profile {profile!r} (use kubo or go-car)") from None


def raw_cid(data) -> bytes:
    return _RAW_PREFIX + _sha256(data).digest()


def pb_cid(block: bytes) -> bytes:
    return _PB_PREFIX + _sha256(block).digest()


Put = Callable[[bytes, "bytes | memoryview"], None]


# ---------------------------------------------------------------- files

class FileBuilder:
    """Balanced file tree built while the chunks stream in.

    levels[k] holds the finished, not yet linked children at height k as (cid, tsize, file_bytes). A level is
    reduced into its parent as soon as it holds max_links children; `finish` closes the partial right edge.
    """

    __slots__ = ("put", "params", "levels", "chunks")

    def __init__(self, put: Put, params: Params):
        self.put = put
        self.params = params
        self.levels: list[list[tuple[bytes, int, int]]] = [[]]
        self.chunks = 0

    def add_leaf(self, cid: bytes, size: int) -> None:
        self.chunks += 1
        self._push(0, (cid, size, size))

    def _push(self, height: int, item: tuple[bytes, int, int]) -> None:
        levels = self.levels
        while True:
            level = levels[height]
            level.append(item)
            if len(level) < self.params.max_links:
                return
            item = self._reduce(level)
            level.clear()
            height += 1
            if height == len(levels):
                levels.append([])

    def _reduce(self, children: list[tuple[bytes, int, int]]) -> tuple[bytes, int, int]:
        filesize = 0
        tsizes = 0
        links = []
        sizes = []
        for cid, tsize, file_bytes in children:
            links.append(dagpb.encode_link(cid, b"", tsize))
            sizes.append(file_bytes)
            filesize += file_bytes
            tsizes += tsize
        block = dagpb.encode_node(links, dagpb.unixfs_data(dagpb.UNIXFS_FILE, filesize=filesize, blocksizes=sizes))
        cid = pb_cid(block)
        self.put(cid, block)
        return cid, len(block) + tsizes, filesize

    def finish(self) -> tuple[bytes, int]:
        """Close the right edge; return (root cid, cumulative size)."""
        levels = self.levels
        collapse = self.params.collapse_single_child
        height = 0
        while True:
            level = levels[height]
            above = any(levels[height + 1:])
            if not above and len(level) <= 1:
                if not level:  # cannot happen: every file has at least one (possibly empty) leaf
                    raise ValueError("file with no chunks")
                cid, tsize, _ = level[0]
                return cid, tsize
            if level:
                if len(level) == 1 and collapse:
                    item = level[0]  # go-unixfsnode's degenerate case: carry the lone child up
                else:
                    item = self._reduce(level)
                level.clear()
                if height + 1 == len(levels):
                    levels.append([])
                levels[height + 1].append(item)
                # the parent level cannot overflow here: it held fewer than max_links before this append,
                # and a full level at finish time is reduced by the next iteration like any other
            height += 1


def symlink_block(target: bytes) -> bytes:
    return dagpb.encode_node([], dagpb.unixfs_data(dagpb.UNIXFS_SYMLINK, data=target))


def directory_block(links: list[tuple[bytes, bytes, int]]) -> bytes:
    """A flat directory from (name, cid, tsize) links already sorted by name bytes."""
    return dagpb.encode_node([dagpb.encode_link(cid, name, tsize) for name, cid, tsize in links],
                             dagpb.DIRECTORY_DATA)


def hamt_estimate(names: Iterable[bytes]) -> int:
    """boxo's "links" estimate: Σ len(name) + len(CID bytes); every child CID here is 36 bytes."""
    return sum(len(n) + CID_LENGTH for n in names)


# ---------------------------------------------------------------- tree of entries

class DirNode:
    __slots__ = ("children", "entry")

    def __init__(self):
        self.children: dict[bytes, DirNode | SourceEntry] = {}
        self.entry: SourceEntry | None = None  # set when the directory was listed explicitly


def split_path(dag_path: bytes) -> list[bytes]:
    if isinstance(dag_path, str):
        raise TypeError("dag_path must be bytes")
    parts = dag_path.split(b"/")
    for part in parts:
        if part in (b"", b".", b".."):
            raise ValueError(f"bad path in DAG: {dag_path!r} (empty, '.' or '..' component)")
    return parts


def build_tree(entries: Iterable[SourceEntry]) -> DirNode:
    """Place entries in a tree; intermediate directories are implied by the paths."""
    top = DirNode()
    for entry in entries:
        if entry.kind not in ("file", "dir", "symlink"):
            raise ValueError(f"unknown entry kind {entry.kind!r} for {entry.dag_path!r}")
        if entry.offset < 0 or entry.length < 0:
            raise ValueError(f"negative offset or length for {entry.dag_path!r}")
        parts = split_path(entry.dag_path)
        node = top
        for part in parts[:-1]:
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = DirNode()
            elif not isinstance(child, DirNode):
                raise ValueError(f"{entry.dag_path!r} is under {part!r}, which is not a directory")
            node = child
        last = parts[-1]
        existing = node.children.get(last)
        if entry.kind == "dir":
            if existing is None:
                existing = node.children[last] = DirNode()
            elif not isinstance(existing, DirNode):
                raise ValueError(f"duplicate path in DAG: {entry.dag_path!r}")
            if existing.entry is not None:
                raise ValueError(f"duplicate path in DAG: {entry.dag_path!r}")
            existing.entry = entry
        else:
            if existing is not None:
                raise ValueError(f"duplicate path in DAG: {entry.dag_path!r}")
            node.children[last] = entry
    return top


def dag_root(top: DirNode, wrap: bool) -> DirNode | SourceEntry:
    """The node the DAG root is built from: the only top-level entry, or a directory of all of them."""
    if not top.children:
        raise ValueError("nothing to put in the CAR (no entries)")
    if not wrap and len(top.children) == 1:
        return next(iter(top.children.values()))
    return top


# ---------------------------------------------------------------- the walk

class _Frame:
    """An open directory (flat) or HAMT shard whose children are being built."""

    __slots__ = ("link_name", "todo", "pos", "links", "shard", "dirnode")

    def __init__(self, link_name: bytes, todo: list, shard: hamt.Shard | None, dirnode: DirNode | None):
        self.link_name = link_name  # the name of the link to this node in its parent
        self.todo = todo            # [(link name, child)] in link order; child: DirNode, SourceEntry, Shard
        self.pos = 0
        self.links: list[tuple[bytes, bytes, int]] = []
        self.shard = shard
        self.dirnode = dirnode      # the directory this frame is (flat) or is a shard of (HAMT)


ReadFile = Callable[[SourceEntry, int], Iterator[memoryview]]
HashChunks = Callable[[memoryview, int], bytes]


def hash_serial(batch, chunk_size: int) -> bytes:
    """SHA-256 of each chunk_size slice of batch (the last may be shorter), digests concatenated."""
    view = memoryview(batch)
    return b"".join([_sha256(view[s:s + chunk_size]).digest() for s in range(0, len(view), chunk_size)])


class DagWriter:
    """Walks a tree of entries in link order and emits every block through `put` in post-order."""

    def __init__(self, put: Put, read_file: ReadFile, params: Params,
                 hash_many: HashChunks = hash_serial):
        self.put = put
        self.read_file = read_file  # yields the entry's bytes as contiguous batches of whole chunks (the last short)
        self.hash_many = hash_many  # (batch, chunk_size) -> the sha2-256 digests of its chunks, concatenated
        self.params = params
        self.entry_cids: list[tuple[bytes, bytes]] = []

    def build(self, root: DirNode | SourceEntry, wrapper: bool = False) -> tuple[bytes, int]:
        """`wrapper`: root is the directory made to hold several inputs (its children keep their given
        order under a profile with top_in_given_order)."""
        if not isinstance(root, DirNode):
            return self._leaf(root)
        stack = [self._open_dir(b"", root, given_order=wrapper and self.params.top_in_given_order)]
        while True:
            frame = stack[-1]
            if frame.pos < len(frame.todo):
                name, child = frame.todo[frame.pos]
                frame.pos += 1
                if isinstance(child, DirNode):
                    stack.append(self._open_dir(name, child))
                elif isinstance(child, hamt.Shard):
                    stack.append(self._open_shard(name, child, frame.dirnode))
                else:
                    cid, tsize = self._leaf(child)
                    frame.links.append((name, cid, tsize))
                continue
            stack.pop()
            cid, tsize = self._close(frame)
            if not stack:
                return cid, tsize
            stack[-1].links.append((frame.link_name, cid, tsize))

    def _open_dir(self, link_name: bytes, node: DirNode, given_order: bool = False) -> _Frame:
        names = node.children
        if hamt_estimate(names) > self.params.hamt_threshold:
            return self._open_shard(link_name, hamt.build_trie(names), node)
        todo = list(names.items()) if given_order else [(name, names[name]) for name in sorted(names)]
        return _Frame(link_name, todo, None, node)

    def _open_shard(self, link_name: bytes, shard: hamt.Shard, dirnode: DirNode) -> _Frame:
        # every shard frame keeps the directory, to resolve its names; only the root shard (depth 0) records
        # the directory's own entry in _close
        todo = []
        for index, child in shard.ordered():
            if isinstance(child, hamt.Shard):
                todo.append((hamt.label(index), child))
            else:
                todo.append((hamt.label(index) + child, dirnode.children[child]))
        return _Frame(link_name, todo, shard, dirnode)

    def _close(self, frame: _Frame) -> tuple[bytes, int]:
        if frame.shard is None:
            block = directory_block(sorted(frame.links))  # already in name order unless built in given order
        else:
            links = [dagpb.encode_link(cid, name, tsize) for name, cid, tsize in frame.links]
            block = dagpb.encode_node(links, hamt.shard_data(frame.shard.bitmap()))
        cid = pb_cid(block)
        self.put(cid, block)
        tsize = len(block) + sum(t for _, _, t in frame.links)
        node = frame.dirnode
        if node is not None and node.entry is not None and (frame.shard is None or frame.shard.depth == 0):
            self.entry_cids.append((node.entry.dag_path, cid))
        return cid, tsize

    def _leaf(self, entry: SourceEntry) -> tuple[bytes, int]:
        if entry.kind == "symlink":
            block = symlink_block(entry.link_target)
            cid = pb_cid(block)
            self.put(cid, block)
            tsize = len(block)
        else:
            builder = FileBuilder(self.put, self.params)
            put = self.put
            add_leaf = builder.add_leaf
            chunk_size = self.params.chunk_size
            for batch in self.read_file(entry, chunk_size):
                digests = self.hash_many(batch, chunk_size)
                n = len(batch)
                for i, start in enumerate(range(0, n, chunk_size)):
                    cid = _RAW_PREFIX + digests[32 * i:32 * i + 32]
                    chunk = batch[start:start + chunk_size]
                    put(cid, chunk)
                    add_leaf(cid, len(chunk))
            if builder.chunks == 0:  # an empty file is the empty raw block
                cid = raw_cid(b"")
                self.put(cid, b"")
                builder.add_leaf(cid, 0)
            cid, tsize = builder.finish()
        self.entry_cids.append((entry.dag_path, cid))
        return cid, tsize
