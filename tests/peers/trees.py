"""Seeded test trees for the conformance tier: every shape where Ptolemy and the reference tools could part.

Sizes around the 262144-byte chunk and the 174-link node (174·262144+1 is where go-car's single-child collapse
starts), directories just at and just over the HAMT threshold (the sum of name length + 36-byte CID over the
entries must be > 262144 to shard), awkward names (spaces, quotes, newline, emoji, an NFC/NFD pair, non-UTF-8
bytes, a control byte and the text that escapes it), symlinks, empty files and directories, duplicate content.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

CHUNK = 262144
HAMT_THRESHOLD = 262144
CID_LEN = 36
BIG = "collapse-174x262144+1.bin"


def _write(path: Path | bytes, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def hamt_dir(path: Path, extra: int) -> None:
    """A directory whose estimate is exactly the threshold (extra=0: stays flat) or threshold+extra (sharded)."""
    path.mkdir(parents=True)
    name_len = 64 - CID_LEN  # 28-byte names: 4096 of them make exactly 262144
    count = HAMT_THRESHOLD // (name_len + CID_LEN)
    fd = os.open(path, os.O_RDONLY)
    try:
        for i in range(count):
            name = f"entry-{i:06d}".ljust(name_len - (1 if i == 0 and extra else 0), "x")
            if i == 0 and extra:
                name += "y" * (1 + extra)
            f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=fd)
            os.write(f, name.encode()[: i % 7])  # tiny, mostly distinct files (and a few duplicates)
            os.close(f)
    finally:
        os.close(fd)


def names_dir(path: Path) -> None:
    path.mkdir(parents=True)
    raw = os.fsencode(path)
    for name in ("with space.txt", 'double"quote', "single'quote", "new\nline", "tab\there", "rocket 🚀.md",
                 "caf\u00e9 nfc", "cafe\u0301 nfd", "a\\x01", "-leading-dash", "#hash", "%percent%41"):
        _write(raw + b"/" + name.encode(), name.encode() * 3)
    for name in (b"latin1 caf\xe9", b"\x01ctl", b"bad \xff\xfe utf8"):
        _write(raw + b"/" + name, name * 2)


def make_tree(root: Path, seed: int = 16, big: bool = True, hamt: bool = True) -> Path:
    """The whole tree under root/tree (and root/big/BIG, a 174·262144+1-byte file); returns the tree."""
    rng = random.Random(seed)
    tree = root / "tree"
    (tree / "sizes").mkdir(parents=True)
    for k in (1, 2, 3):
        for delta in (-1, 0, 1):
            _write(tree / "sizes" / f"chunks{k}{delta:+d}.bin", rng.randbytes(k * CHUNK + delta))
    if big:  # beside the tree, not in it: tested on its own, so the tree-wide runs stay quick
        (root / "big").mkdir(parents=True)
        _write(root / "big" / BIG, rng.randbytes(174 * CHUNK + 1))
    (tree / "mixed" / "deep" / "er" / "still").mkdir(parents=True)
    for i in range(40):
        size = rng.choice((0, 1, 7, 100, 4095, 65536, 200_000, 300_001))
        sub = rng.choice(("mixed", "mixed/deep", "mixed/deep/er", "mixed/deep/er/still"))
        _write(tree / sub / f"f{i:03d}.dat", rng.randbytes(size))
    (tree / "empty" / "nested" / "deeper").mkdir(parents=True)
    (tree / "empty" / "alone").mkdir()
    _write(tree / "empty" / "zero.bin", b"")
    (tree / "dup").mkdir()
    same = rng.randbytes(CHUNK + 10)
    for name in ("one", "two", "three"):
        _write(tree / "dup" / name, same)
    _write(tree / "dup" / "prefix-of-one", same[:CHUNK])  # its only chunk is one's first: a shared block
    (tree / "links").mkdir()
    _write(tree / "links" / "target.txt", b"target\n")
    os.symlink("target.txt", tree / "links" / "to-file")
    os.symlink("../mixed", tree / "links" / "to-dir")
    os.symlink("does/not/exist", tree / "links" / "dangling")
    _write(tree / ".hidden", b"hidden file\n")
    (tree / ".hidden-dir").mkdir()
    _write(tree / ".hidden-dir" / "inside", b"inside\n")
    names_dir(tree / "names")
    if hamt:
        hamt_dir(tree / "hamt-at-threshold", 0)
        hamt_dir(tree / "hamt-over-threshold", 1)
    return tree


def tree_digest(root: Path | bytes) -> dict[bytes, tuple]:
    """Every entry under root: path → ("file", bytes) / ("dir",) / ("symlink", target), for byte-exact checks."""
    out: dict[bytes, tuple] = {}
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        rel = os.path.relpath(dirpath, base)
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            key = os.path.normpath(os.path.join(rel, name))
            if os.path.islink(full):
                out[key] = ("symlink", os.readlink(full))
            elif os.path.isdir(full):
                out[key] = ("dir",)
            else:
                with open(full, "rb") as fh:
                    out[key] = ("file", fh.read())
    return out
