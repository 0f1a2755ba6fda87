"""Exact CAR length from names and sizes alone, with no reads.

Every block length of a UnixFS DAG depends only on names, file sizes and the tree shape: CIDs all have 36 bytes,
and a link's Tsize (the only other variable field) is a cumulative size that is itself predictable. So the CAR
length is computable up front. The prediction assumes every block is distinct; the writer stores equal blocks
once (equal files, empty files, repeated chunks such as runs of zeros, equal empty directories), which can only
make the real CAR *smaller* than predicted, never larger: a container sized by the prediction never overflows.

`predict_car_size` does a whole tree at once. The packer's incremental model, `core/carmodel.ContainerSizer`
(O(depth) per added entry, exact unless a HAMT appears, then an upper bound settled by `predict_car_size`), is
the one model containerize uses; both take the profile's parameters (`unixfs.Params`).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable

from ptolemy_tui.core import dagpb, hamt
from ptolemy_tui.core.multiformats import varint_length
from ptolemy_tui.core.unixfs import CID_LENGTH, DirNode, Params, SourceEntry, build_tree, dag_root, get_params

# The CARv1 header of a one-root CAR: varint(0x3a) + 58 bytes of DAG-CBOR {"roots": [36-byte CID], "version": 1}.
# The one definition: the writers (core/car, carplan, dataset_dag, carv2) and both size models use it.
CARV1_HEADER_LENGTH = 59
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
        return CARV1_HEADER_LENGTH + _entry_stats(root, params)[0]
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
    return CARV1_HEADER_LENGTH + total
