"""Byte-exact CAR length of a container, built up one item at a time (no DB, no I/O).

A container's CAR is a UnixFS directory tree (kubo `ipfs add -r --cid-version=1`, raw leaves, 256 KiB
chunks, balanced 174-link files; see ../shared/FORMATS.md) written as CARv1 without block dedup. Its length is
    header + Σ over blocks (varint(36 + len(block)) + 36 + len(block))
(every CID here — raw or dag-pb, CIDv1 sha2-256 — is 36 bytes). File DAGs depend only on the file length, so
they are computed once per length; directory blocks depend on the names and cumulative sizes (Tsize) of their
children, so ContainerSizer keeps each directory's link bytes and Tsize and updates the chain of ancestors when
an item is added (O(depth) per item, never O(items)).

HAMT directories (Σ(len(name) + 36) over entries > 256 KiB) depend on murmur3 buckets of every name. For
those the sizer keeps a strict upper bound (every entry may open one sub-shard), so a container that the sizer
accepts is never over its limit; the exact figure then comes from core.carsize.predict_car_size (see
packing.exact_car_size). It is the one incremental model: its same-directory fast path packs a million files at
about 2 µs per item.
"""
from __future__ import annotations

from functools import lru_cache

from ptolemy_tui.core.carsize import CARV1_HEADER_LENGTH, file_stats
from ptolemy_tui.core.unixfs import CHUNK_SIZE as CHUNK, HAMT_THRESHOLD, MAX_LINKS, get_params

CID_LEN = 36
DIR_DATA_LEN = 4  # Data field `0a 02 08 01`
# Per-entry slack of a HAMT directory over the basic-directory figure: the 2-char bucket prefix in the link name
# (+2, and +1 for each of the two length varints that may grow), plus one possible sub-shard per entry: its Data
# (≤ 2 + 2+2+32 + 2 + 3 bytes), CAR framing (≤ 5 + 36) and its own link in its parent (≤ 3 + 38 + 4 + 11).
HAMT_ENTRY_SLACK = 4 + 43 + 41 + 56
HAMT_ROOT_DATA = 45  # the root shard's Data field replaces the 4-byte directory Data


def varint_len(n: int) -> int:
    return (n.bit_length() + 6) // 7 or 1


def framed(block_len: int) -> int:
    """Bytes one block takes in a CARv1 section."""
    n = CID_LEN + block_len
    return ((n.bit_length() + 6) // 7 or 1) + n


def link_len(name_len: int, tsize: int) -> int:
    """One dag-pb PBLink in its parent: `12 len { 0a 24 CID, 12 len name, 18 tsize }`."""
    inner = 40 + ((name_len.bit_length() + 6) // 7 or 1) + name_len + ((tsize.bit_length() + 6) // 7 or 1)
    return 1 + ((inner.bit_length() + 6) // 7 or 1) + inner


def _check_profile(profile: str):
    params = get_params(profile)
    if (params.chunk_size, params.max_links, params.hamt_threshold) != (CHUNK, MAX_LINKS, HAMT_THRESHOLD):
        raise ValueError(f"the packer's size model knows {CHUNK}-byte chunks, {MAX_LINKS} links and a "
                         f"{HAMT_THRESHOLD}-byte HAMT threshold; profile {params.name} differs")
    return params


@lru_cache(maxsize=1 << 16)
def file_dag(length: int, profile: str = "kubo") -> tuple[int, int]:
    """(bytes of the file's blocks in a CAR, Tsize of its root) for a file of `length` bytes: the formats
    code's per-level closed form (kubo wraps a lone trailing child, go-car carries it up)."""
    params = _check_profile(profile)
    if length <= CHUNK:  # one raw leaf; an empty file is the empty raw block
        return framed(length), length
    if length <= ONE_NODE_MAX:
        return one_node_file(length)
    return file_stats(length, CHUNK, MAX_LINKS, params.collapse_single_child)


ONE_NODE_MAX = MAX_LINKS * CHUNK  # files up to 43.5 MiB: one dag-pb node over their raw leaves


def one_node_file(length: int) -> tuple[int, int]:
    """file_dag of a file of CHUNK < length <= ONE_NODE_MAX bytes, the same for every profile: a closed form with
    the varint lengths inline (no cache: computing it costs a third of a cache lookup with its checks, and the
    packer asks for a new length for nearly every file)."""
    full = (length - 1) // CHUNK
    last = length - full * CHUNK
    inner = 41 + ((last.bit_length() + 6) // 7 or 1)  # the last leaf's link: CID, empty name, Tsize
    links = full * _FULL_LEAF_LINK + 1 + ((inner.bit_length() + 6) // 7 or 1) + inner
    unixfs = 4 + ((length.bit_length() + 6) // 7 or 1) + full * _FULL_LEAF_SIZE_FIELD + ((last.bit_length() + 6) // 7 or 1)
    block = links + 1 + ((unixfs.bit_length() + 6) // 7 or 1) + unixfs
    n, m = CID_LEN + block, CID_LEN + last
    return (((n.bit_length() + 6) // 7 or 1) + n + full * _FULL_LEAF_FRAMED + ((m.bit_length() + 6) // 7 or 1) + m,
            block + full * CHUNK + last)


def symlink_dag(target_len: int) -> tuple[int, int]:
    """A UnixFS symlink node: Data `{Type: Symlink, Data: target}`; no links."""
    unixfs = 2 + (1 + varint_len(target_len) + target_len if target_len else 0)  # proto omits empty Data
    block = 1 + varint_len(unixfs) + unixfs
    return framed(block), block


_FULL_LEAF_LINK = link_len(0, CHUNK)
_FULL_LEAF_SIZE_FIELD = 1 + varint_len(CHUNK)
_FULL_LEAF_FRAMED = framed(CHUNK)


class _Dir:
    __slots__ = ("parent", "name_len", "links", "child_tsize", "entries", "est", "blk", "cum", "link", "hamt",
                 "pending", "headroom")

    def __init__(self, parent: "_Dir | None", name_len: int):
        self.parent = parent
        self.name_len = name_len
        self.links = 0  # Σ link_len of children (basic-directory form)
        self.child_tsize = 0  # Σ Tsize of children
        self.entries = 0
        self.est = 0  # Σ (len(name) + 36): the HAMT switch estimate
        self.blk = DIR_DATA_LEN  # block length (an upper bound once a HAMT)
        self.cum = DIR_DATA_LEN  # Tsize of this directory
        self.link = 0  # this directory's link length in its parent
        self.hamt = False
        self.pending = 0  # growth of cum not yet pushed to the ancestors (see ContainerSizer.try_add)
        self.headroom = 0  # how far cum may grow before some ancestor's link changes length


def _dir_block(links: int, entries: int, hamt: bool) -> int:
    if not hamt:
        return links + DIR_DATA_LEN
    return links + HAMT_ROOT_DATA + entries * HAMT_ENTRY_SLACK


class ContainerSizer:
    """The CAR length of one container's directory tree as items are added (exact unless a HAMT appears)."""

    def __init__(self, profile: str = "kubo", wrap: bool = True):
        _check_profile(profile)  # here, since try_add sizes most files without file_dag's check
        self.profile = profile
        self.wrap = wrap  # containers are written wrapped: the root is always a directory (see packing)
        self.root = _Dir(None, 0)
        self.dirs: dict[bytes, _Dir] = {b"": self.root}
        self.size = CARV1_HEADER_LENGTH + framed(DIR_DATA_LEN)
        self.has_hamt = False
        self.items = 0
        self.hot: _Dir | None = None  # the directory whose growth is not yet pushed up

    def _flush(self) -> None:
        """Push the hot directory's pending growth up its chain. Within the headroom no link changes length,
        so only the Tsize sums move and the CAR length stays as it is."""
        hot = self.hot
        if hot is None:
            return
        delta = hot.pending
        hot.pending = 0
        self.hot = None
        if not delta:
            return
        x = hot.parent
        while x is not None:
            x.child_tsize += delta
            x.cum += delta
            x = x.parent
        x = hot
        while x.parent is not None:
            x.link = link_len(x.name_len, x.cum)
            x = x.parent

    @property
    def car_size(self) -> int:
        """The CAR length as written. Unwrapped, a lone top-level entry is the root itself, with no directory
        block above it (`self.size`, which counts that block, is what the limit is checked against)."""
        if not self.wrap and self.root.entries == 1:
            return self.size - framed(self.root.blk)
        return self.size

    def entry_cost(self, length: int, kind: str = "file", target_len: int = 0) -> tuple[int, int]:
        if kind == "symlink":
            return symlink_dag(target_len)
        return file_dag(length, self.profile)

    def try_add(self, car_path: bytes, length: int, limit: int, kind: str = "file", target_len: int = 0) -> bool:
        """Add the entry when the CAR stays ≤ limit; otherwise change nothing and return False."""
        if kind == "file" and length <= CHUNK:
            n = CID_LEN + length
            dag_framed, tsize = ((n.bit_length() + 6) // 7 or 1) + n, length
        elif kind == "file" and length <= ONE_NODE_MAX:
            dag_framed, tsize = one_node_file(length)
        else:
            dag_framed, tsize = self.entry_cost(length, kind, target_len)
        dirpath, _, name = car_path.rpartition(b"/")
        d = self.dirs.get(dirpath)
        if d is not None and not d.hamt:
            # Fast path (inline: it runs once per file): another entry in the same directory. Only this
            # directory's block changes while its growth stays inside the headroom of every ancestor's Tsize varint.
            if d is not self.hot:
                self._make_hot(d)
            name_len = len(name)
            est = d.est + name_len + CID_LEN
            if est <= HAMT_THRESHOLD:
                # link_len() and framed() written out: this runs once per file, and a call costs more than the sums
                inner = 40 + ((name_len.bit_length() + 6) // 7 or 1) + name_len + ((tsize.bit_length() + 6) // 7 or 1)
                links = d.links + 1 + ((inner.bit_length() + 6) // 7 or 1) + inner
                blk = links + DIR_DATA_LEN
                cum = blk + d.child_tsize + tsize
                pending = d.pending + cum - d.cum
                if pending < d.headroom:
                    new, old = CID_LEN + blk, CID_LEN + d.blk
                    size = (self.size + dag_framed + ((new.bit_length() + 6) // 7 or 1) + new
                            - ((old.bit_length() + 6) // 7 or 1) - old)
                    if size > limit:
                        return False
                    d.links, d.blk, d.cum, d.est, d.pending = links, blk, cum, est, pending
                    d.child_tsize += tsize
                    d.entries += 1
                    self.size = size
                    self.items += 1
                    return True
        return self._add_through_ancestors(d, dirpath, name, dag_framed, tsize, limit)

    def _make_hot(self, d: _Dir) -> None:
        """`d` takes the fast path: how much its subtree may grow before an ancestor's Tsize varint lengthens."""
        self._flush()
        headroom = 1 << 62
        x = d
        while x.parent is not None:
            room = (1 << (7 * ((x.cum.bit_length() + 6) // 7 or 1))) - x.cum
            if room < headroom:
                headroom = room
            x = x.parent
        d.headroom = headroom
        self.hot = d

    def _add_through_ancestors(self, d: _Dir | None, dirpath: bytes, name: bytes, dag_framed: int, tsize: int,
                               limit: int) -> bool:
        """The general case: new directories, a link that grows a varint, a HAMT. Price the whole chain of
        blocks from the entry up to the root, then apply it only if the CAR stays within the limit."""
        self._flush()
        new: list[tuple[bytes, bytes]] = []
        if d is None:
            d, new = self._missing_directories(dirpath)
        updates, size, hamt_switch = self._price_chain(d, new, name, tsize, self.size + dag_framed)
        if size > limit:
            return False
        self._apply_chain(d, new, updates)
        self.has_hamt |= hamt_switch
        self.size = size
        self.items += 1
        return True

    def _missing_directories(self, dirpath: bytes) -> tuple[_Dir, list[tuple[bytes, bytes]]]:
        """(the deepest directory the container has, the (path, name) of those it lacks, deepest first)."""
        dirs = self.dirs
        new: list[tuple[bytes, bytes]] = []
        p = dirpath
        while p not in dirs:
            parent, _, dname = p.rpartition(b"/")
            new.append((p, dname))
            p = parent
        return dirs[p], new

    @staticmethod
    def _price_chain(d: _Dir, new: list[tuple[bytes, bytes]], name: bytes, tsize: int, size: int):
        """The chain of changes, bottom up — (dir or None for a new one, links, child_tsize, entries, est, blk,
        cum, hamt) — the CAR size after them, and whether a HAMT appears."""
        updates = []
        child_name_len, child_t, child_old_link, child_old_t = len(name), tsize, 0, 0
        added_entry = True
        hamt_switch = False
        for _, dname in new:  # each new directory holds just the child below it
            links = link_len(child_name_len, child_t)
            est = child_name_len + CID_LEN
            hamt = est > HAMT_THRESHOLD
            blk = _dir_block(links, 1, hamt)
            cum = blk + child_t
            size += framed(blk)
            updates.append((None, links, child_t, 1, est, blk, cum, hamt))
            child_name_len, child_t, child_old_link, child_old_t = len(dname), cum, 0, 0
            hamt_switch |= hamt
        x = d
        while x is not None:
            new_link = link_len(child_name_len, child_t)
            links = x.links - child_old_link + new_link
            child_tsize = x.child_tsize - child_old_t + child_t
            entries, est = x.entries, x.est
            if added_entry:
                entries += 1
                est += child_name_len + CID_LEN
            hamt = x.hamt or est > HAMT_THRESHOLD
            blk = _dir_block(links, entries, hamt)
            cum = blk + child_tsize
            size += framed(blk) - framed(x.blk)
            updates.append((x, links, child_tsize, entries, est, blk, cum, hamt))
            hamt_switch |= hamt
            added_entry = False
            child_name_len, child_t, child_old_link, child_old_t = x.name_len, cum, x.link, x.cum
            x = x.parent
        return updates, size, hamt_switch

    def _apply_chain(self, d: _Dir, new: list[tuple[bytes, bytes]], updates: list[tuple]) -> None:
        """Create the new directories (top-most first) and apply the priced chain."""
        parent = d
        created = []
        for (path, dname) in reversed(new):
            nd = _Dir(parent, len(dname))
            self.dirs[path] = nd
            created.append(nd)
            parent = nd
        created.reverse()  # now bottom-up, like `updates`
        prev = None
        for i, (x, links, child_tsize, entries, est, blk, cum, hamt) in enumerate(updates):
            if x is None:
                x = created[i]
            x.links, x.child_tsize, x.entries, x.est, x.blk, x.cum, x.hamt = links, child_tsize, entries, est, blk, cum, hamt
            if prev is not None:
                prev.link = link_len(prev.name_len, prev.cum)
            prev = x


def tree_car_size(entries, profile: str = "kubo", wrap: bool = True) -> tuple[int, bool]:
    """(CAR length, exact?) of the directory tree of (car_path, length, kind, target_len) entries, from scratch."""
    sizer = ContainerSizer(profile, wrap)
    for car_path, length, kind, target_len in entries:
        if not sizer.try_add(car_path, length, 1 << 62, kind, target_len):
            raise AssertionError("unreachable: no limit")
    return sizer.car_size, not sizer.has_hamt
