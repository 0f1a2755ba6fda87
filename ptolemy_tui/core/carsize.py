"""Exact CAR length from names and sizes alone, with no reads.

Every block length of a UnixFS DAG depends only on names, file sizes and the tree shape: CIDs all have 36 bytes,
and a link's Tsize (the only other variable field) is a cumulative size that is itself predictable. So the CAR
length is computable up front. The prediction assumes every block is distinct; the writer stores equal blocks
once (equal files, empty files, repeated chunks such as runs of zeros, equal empty directories), which can only
make the real CAR *smaller* than predicted, never larger: a container sized by the prediction never overflows.

`predict_car_size` does a whole tree at once; `CarSizeModel` keeps the exact size of a growing set of entries,
updated in O(depth) per added entry (including the flip of a directory into a HAMT at the threshold), for the
containerize step that adds candidates one at a time.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable

from ptolemy_tui.core import dagpb, hamt
from ptolemy_tui.core.multiformats import varint_length
from ptolemy_tui.core.unixfs import CID_LENGTH, DirNode, Params, SourceEntry, build_tree, dag_root, get_params, split_path

HEADER_LENGTH = 59
_C = CID_LENGTH
_DIR_DATA_FIELD = dagpb.data_field_length(len(dagpb.DIRECTORY_DATA))  # 4: 0a 02 08 01


def section_length(block_len: int) -> int:
    """A CAR section: varint(len(CID) + len(block)) ‖ CID ‖ block."""
    return varint_length(_C + block_len) + _C + block_len


def _link(name_len: int, tsize: int) -> int:
    return dagpb.link_length(_C, name_len, tsize)


@lru_cache(maxsize=65536)
def file_stats(length: int, chunk_size: int, max_links: int, collapse: bool) -> tuple[int, int]:
    """(CAR bytes, cumulative DAG size) of a file of `length` bytes.

    A level of the balanced tree always consists of m items: m-1 identical "full" subtrees and one last one,
    so each level is computed in O(1) from the one below.
    """
    n = max(1, -(-length // chunk_size))
    last_len = length - (n - 1) * chunk_size
    if n == 1:
        return section_length(last_len), last_len
    # (car bytes, tsize, file bytes) of a full item and of the last item
    full = (section_length(chunk_size), chunk_size, chunk_size)
    last = (section_length(last_len), last_len, last_len)
    m = n
    while m > 1:
        groups = -(-m // max_links)
        in_last = m - max_links * (groups - 1)
        next_full = _node(full, max_links, None) if groups > 1 else None
        if in_last == 1 and collapse and groups > 1:
            next_last = last  # go-unixfsnode carries a lone trailing child up
        else:
            next_last = _node(full, in_last - 1, last)
        full, last, m = next_full, next_last, groups
    return last[0], last[1]


def _node(full, count: int, last) -> tuple[int, int, int]:
    """A file node over `count` copies of `full` and then `last` (or nothing)."""
    links = count * _link(0, full[1]) if count else 0
    car = count * full[0] if count else 0
    tsize = count * full[1] if count else 0
    fbytes = count * full[2] if count else 0
    sizes_len = count * (1 + varint_length(full[2])) if count else 0
    if last is not None:
        links += _link(0, last[1])
        car += last[0]
        tsize += last[1]
        fbytes += last[2]
        sizes_len += 1 + varint_length(last[2])
    data_len = 2 + 1 + varint_length(fbytes) + sizes_len
    block = links + dagpb.data_field_length(data_len)
    return car + section_length(block), tsize + block, fbytes


def symlink_stats(target_len: int) -> tuple[int, int]:
    data_len = 2 + (1 + varint_length(target_len) + target_len if target_len else 0)
    block = dagpb.data_field_length(data_len)
    return section_length(block), block


def _shard_block(link_sum: int, bitmap_len: int) -> int:
    return link_sum + dagpb.data_field_length(hamt.shard_data_length(bitmap_len))


def _entry_stats(entry: SourceEntry, params: Params) -> tuple[int, int]:
    if entry.kind == "symlink":
        return symlink_stats(len(entry.link_target))
    return file_stats(entry.length, params.chunk_size, params.max_links, params.collapse_single_child)


def _dir_stats(children: dict, child_stats: dict, params: Params) -> tuple[int, int]:
    """(CAR bytes of the directory's own blocks, its cumulative size) from its children's (car, tsize)."""
    estimate = sum(len(name) + _C for name in children)
    if estimate <= params.hamt_threshold:
        block = _DIR_DATA_FIELD
        tsizes = 0
        for name in children:
            t = child_stats[name][1]
            block += _link(len(name), t)
            tsizes += t
        return section_length(block), block + tsizes
    return _shard_stats(hamt.build_trie(children), child_stats)


def _shard_stats(shard: hamt.Shard, child_stats: dict) -> tuple[int, int]:
    car = 0
    links = 0
    tsizes = 0
    for _index, child in shard.children.items():
        if isinstance(child, hamt.Shard):
            c, t = _shard_stats(child, child_stats)
            car += c
            links += _link(2, t)
        else:
            t = child_stats[child][1]
            links += _link(2 + len(child), t)
        tsizes += t
    block = _shard_block(links, len(shard.bitmap()))
    return car + section_length(block), block + tsizes


def predict_car_size(items: Iterable, *, profile: str | Params = "kubo", wrap: bool = False) -> int:
    """Exact CAR length for (dag_path, length) file items (or SourceEntry objects), assuming no equal blocks."""
    params = get_params(profile)
    entries = (it if isinstance(it, SourceEntry) else SourceEntry(it[0], None, 0, it[1]) for it in items)
    root = dag_root(build_tree(entries), wrap)
    if not isinstance(root, DirNode):
        return HEADER_LENGTH + _entry_stats(root, params)[0]
    total = 0
    # iterative post-order: (node, its name in the parent, children's (car, tsize) so far, child iterator)
    stack = [(root, b"", {}, iter(root.children.items()))]
    while stack:
        node, node_name, stats, it = stack[-1]
        for name, child in it:
            if isinstance(child, DirNode):
                stack.append((child, name, {}, iter(child.children.items())))
                break
            c, t = _entry_stats(child, params)
            total += c
            stats[name] = (c, t)
        else:
            stack.pop()
            car, tsize = _dir_stats(node.children, stats, params)
            total += car
            if stack:
                stack[-1][2][node_name] = (car, tsize)
    return HEADER_LENGTH + total


# ---------------------------------------------------------------- incremental model

class _Leaf:
    __slots__ = ("car", "tsize")

    def __init__(self, car: int, tsize: int):
        self.car = car
        self.tsize = tsize


class _MShard:
    __slots__ = ("depth", "parent", "children", "link_sum", "tsize_sum", "max_bucket", "tsize", "car")

    def __init__(self, depth: int, parent: "_MShard | None"):
        self.depth = depth
        self.parent = parent
        self.children: dict[int, bytes | _MShard] = {}
        self.link_sum = 0
        self.tsize_sum = 0
        self.max_bucket = 0
        self.tsize = 0
        self.car = 0


class _Dir:
    __slots__ = ("parent", "name", "children", "link_sum", "tsize_sum", "estimate", "trie", "hashes", "car", "tsize",
                 "explicit")

    def __init__(self, parent: "_Dir | None", name: bytes):
        self.parent = parent
        self.name = name
        self.explicit = False  # added as an entry itself (kept when its last child is removed)
        self.children: dict[bytes, _Dir | _Leaf] = {}
        self.link_sum = 0
        self.tsize_sum = 0
        self.estimate = 0
        self.trie: _MShard | None = None
        self.hashes: dict[bytes, int] | None = None
        self.car = section_length(_DIR_DATA_FIELD)
        self.tsize = _DIR_DATA_FIELD


class CarSizeModel:
    """Exact CAR size of a set of entries that grows one entry at a time.

    `add` costs O(path depth) (plus O(HAMT depth) in sharded directories; the one-off flip of a directory into
    a HAMT at the threshold costs O(its entries)). `size` is exact when all blocks are distinct, an upper bound
    otherwise (see the module doc).
    """

    def __init__(self, profile: str | Params = "kubo", wrap: bool = False):
        self.params = get_params(profile)
        self.wrap = wrap
        self.root = _Dir(None, b"")
        self._sum = 0  # CAR bytes of every block except the virtual root directory's
        self.count = 0

    @property
    def size(self) -> int:
        if not self.root.children:
            return 0
        if self.wrap or len(self.root.children) > 1:
            return HEADER_LENGTH + self._sum + self.root.car
        return HEADER_LENGTH + self._sum

    def __len__(self) -> int:
        return self.count

    def add(self, dag_path: bytes, length: int = 0, kind: str = "file", link_target: bytes = b"") -> int:
        """Add one entry; return the new exact CAR size."""
        parts = split_path(dag_path)
        d = self.root
        for part in parts[:-1]:
            child = d.children.get(part)
            if child is None:
                child = _Dir(d, part)
                self._sum += child.car
                self._attach(d, part, child)
            elif not isinstance(child, _Dir):
                raise ValueError(f"{dag_path!r} is under {part!r}, which is not a directory")
            d = child
        name = parts[-1]
        existing = d.children.get(name)
        if kind == "dir":
            if existing is not None:
                if isinstance(existing, _Dir) and not existing.explicit:
                    existing.explicit = True  # already implied by an earlier path: same blocks
                    self.count += 1
                    return self.size
                raise ValueError(f"duplicate path: {dag_path!r}")
            child = _Dir(d, name)
            child.explicit = True
        elif kind in ("file", "symlink"):
            if existing is not None:
                raise ValueError(f"duplicate path: {dag_path!r}")
            p = self.params
            car, tsize = (symlink_stats(len(link_target)) if kind == "symlink" else
                          file_stats(length, p.chunk_size, p.max_links, p.collapse_single_child))
            child = _Leaf(car, tsize)
        else:
            raise ValueError(f"unknown entry kind {kind!r}")
        self._sum += child.car
        self._attach(d, name, child)
        self.count += 1
        return self.size

    def remove(self, dag_path: bytes) -> int:
        """Take out an entry added before (a file, a symlink or an empty directory); return the new size.

        Directories that only existed because of it go too; a directory that drops back to the threshold turns
        flat again, and a HAMT loses the sub-shards that no longer hold two names.
        """
        parts = split_path(dag_path)
        d = self.root
        for part in parts[:-1]:
            d = d.children.get(part)
            if not isinstance(d, _Dir):
                raise KeyError(dag_path)
        name = parts[-1]
        child = d.children.get(name)
        if child is None:
            raise KeyError(dag_path)
        if isinstance(child, _Dir):
            if child.children:
                raise ValueError(f"directory is not empty: {dag_path!r}")
            if not child.explicit:
                raise KeyError(dag_path)
        self._detach(d, name)
        self.count -= 1
        while d is not self.root and not d.children and not d.explicit:
            parent = d.parent
            self._detach(parent, d.name)
            d = parent
        return self.size

    # -- internals

    def _detach(self, d: _Dir, name: bytes) -> None:
        old_car, old_tsize = d.car, d.tsize
        child = d.children.pop(name)
        self._sum -= child.car
        d.link_sum -= _link(len(name), child.tsize)
        d.tsize_sum -= child.tsize
        d.estimate -= len(name) + _C
        if d.trie is not None:
            if d.estimate <= self.params.hamt_threshold:
                d.trie = d.hashes = None  # flat again; _bubble recomputes the flat block
            else:
                self._trie_remove(d, name, child.tsize)
                del d.hashes[name]
        self._bubble(d, old_car, old_tsize)

    def _trie_remove(self, d: _Dir, name: bytes, tsize: int) -> None:
        h = d.hashes[name]
        m = d.trie
        while True:
            index = hamt.bucket(h, m.depth)
            current = m.children[index]
            if isinstance(current, _MShard):
                m = current
                continue
            break
        del m.children[index]
        m.link_sum -= _link(2 + len(name), tsize)
        m.tsize_sum -= tsize
        m.max_bucket = max(m.children) if m.children else 0
        # a sub-shard left with one name (and no sub-shard) dissolves into its parent, repeatedly
        while m.parent is not None and len(m.children) == 1:
            (only,) = m.children.values()
            if isinstance(only, _MShard):
                break
            parent = m.parent
            t = d.children[only].tsize
            slot = hamt.bucket(h, parent.depth)
            parent.link_sum += _link(2 + len(only), t) - _link(2, m.tsize)
            parent.tsize_sum += t - m.tsize
            parent.children[slot] = only
            d.car -= m.car
            m = parent
        self._propagate(d, m)


    def _attach(self, d: _Dir, name: bytes, child) -> None:
        old_car, old_tsize = d.car, d.tsize
        d.children[name] = child
        d.link_sum += _link(len(name), child.tsize)
        d.tsize_sum += child.tsize
        d.estimate += len(name) + _C
        if d.trie is not None:
            h = hamt.name_hash(name)
            self._trie_insert(d, name, h, child.tsize)
            d.hashes[name] = h
        elif d.estimate > self.params.hamt_threshold:
            self._flip(d)
        self._bubble(d, old_car, old_tsize)

    def _bubble(self, d: _Dir, old_car: int, old_tsize: int) -> None:
        while True:
            if d.trie is None:
                block = d.link_sum + _DIR_DATA_FIELD
                d.car = section_length(block)
                d.tsize = block + d.tsize_sum
            else:
                d.tsize = d.trie.tsize  # d.car is kept up to date by the shard updates
            if d.parent is None:
                return
            self._sum += d.car - old_car
            if d.tsize == old_tsize:
                return
            p = d.parent
            p_car, p_tsize = p.car, p.tsize
            p.link_sum += _link(len(d.name), d.tsize) - _link(len(d.name), old_tsize)
            p.tsize_sum += d.tsize - old_tsize
            if p.trie is not None:
                self._trie_child_changed(p, d.name, old_tsize, d.tsize)
            d, old_car, old_tsize = p, p_car, p_tsize

    def _flip(self, d: _Dir) -> None:
        """The directory crossed the threshold: build its HAMT from scratch (once per directory)."""
        d.hashes = {name: hamt.name_hash(name) for name in d.children}
        trie = hamt.Shard(0)
        scratch: dict[bytes, int] = {}
        for name, h in d.hashes.items():
            hamt.insert(trie, name, h, scratch)
            scratch[name] = h
        d.car = 0
        d.trie = self._convert(d, trie, None)

    def _convert(self, d: _Dir, shard: hamt.Shard, parent: _MShard | None) -> _MShard:
        m = _MShard(shard.depth, parent)
        for index, child in shard.children.items():
            if isinstance(child, hamt.Shard):
                sub = self._convert(d, child, m)
                m.children[index] = sub
                m.link_sum += _link(2, sub.tsize)
                m.tsize_sum += sub.tsize
            else:
                t = d.children[child].tsize
                m.children[index] = child
                m.link_sum += _link(2 + len(child), t)
                m.tsize_sum += t
            m.max_bucket = max(m.max_bucket, index)
        self._refresh(d, m)
        return m

    def _refresh(self, d: _Dir, m: _MShard) -> None:
        block = _shard_block(m.link_sum, m.max_bucket // 8 + 1)
        car = section_length(block)
        d.car += car - m.car
        m.car = car
        m.tsize = block + m.tsize_sum

    def _propagate(self, d: _Dir, m: _MShard) -> None:
        while True:
            old = m.tsize
            self._refresh(d, m)
            parent = m.parent
            if parent is None or m.tsize == old:
                return
            parent.link_sum += _link(2, m.tsize) - _link(2, old)
            parent.tsize_sum += m.tsize - old
            m = parent

    def _trie_insert(self, d: _Dir, name: bytes, h: int, tsize: int) -> None:
        m = d.trie
        while True:
            index = hamt.bucket(h, m.depth)
            current = m.children.get(index)
            if isinstance(current, _MShard):
                m = current
                continue
            if current is None:
                m.children[index] = name
                m.link_sum += _link(2 + len(name), tsize)
                m.tsize_sum += tsize
                m.max_bucket = max(m.max_bucket, index)
                self._propagate(d, m)
                return
            # collision: `current` and `name` go into a new chain of sub-shards until their buckets differ
            other_t = d.children[current].tsize
            m.link_sum -= _link(2 + len(current), other_t)
            m.tsize_sum -= other_t
            chain = []
            depth = m.depth + 1
            h2 = d.hashes[current]
            while hamt.bucket(h, depth) == hamt.bucket(h2, depth):
                chain.append(depth)
                depth += 1
            bottom = _MShard(depth, None)
            for nm, hh, tt in ((name, h, tsize), (current, h2, other_t)):
                b = hamt.bucket(hh, depth)
                bottom.children[b] = nm
                bottom.link_sum += _link(2 + len(nm), tt)
                bottom.tsize_sum += tt
                bottom.max_bucket = max(bottom.max_bucket, b)
            self._refresh(d, bottom)
            node = bottom
            for dep in reversed(chain):
                up = _MShard(dep, None)
                b = hamt.bucket(h, dep)
                up.children[b] = node
                node.parent = up
                up.link_sum = _link(2, node.tsize)
                up.tsize_sum = node.tsize
                up.max_bucket = b
                self._refresh(d, up)
                node = up
            node.parent = m
            m.children[index] = node
            m.link_sum += _link(2, node.tsize)
            m.tsize_sum += node.tsize
            self._propagate(d, m)
            return

    def _trie_child_changed(self, d: _Dir, name: bytes, old: int, new: int) -> None:
        h = d.hashes[name]
        m = d.trie
        while True:
            current = m.children[hamt.bucket(h, m.depth)]
            if isinstance(current, _MShard):
                m = current
                continue
            m.link_sum += _link(2 + len(name), new) - _link(2 + len(name), old)
            m.tsize_sum += new - old
            self._propagate(d, m)
            return
