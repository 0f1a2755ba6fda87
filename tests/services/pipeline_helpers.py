"""Trees on disk and projects over them, shared by the scan, containerize, tree and CLI tests."""
from __future__ import annotations

import os
import socket
from pathlib import Path

from ptolemy_tui.services import projects

ODD_NAMES = [
    b"\xff\xfe-not-utf8",  # undecodable bytes must round-trip exactly
    b"caf\xc3\xa9 space.txt",
    b"new\nline",
    b"-leading-dash",
    b"x" * 200,
]


def write(path: Path | bytes, size: int) -> None:
    with open(path, "wb") as fh:
        fh.write(b"\x01" * size)


def make_tree(root: Path) -> dict:
    """A small tree with every kind of entry the scan must handle; returns what it holds."""
    root.mkdir(parents=True, exist_ok=True)
    broot = os.fsencode(root)
    (root / "docs").mkdir()
    (root / "docs" / "deep" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    write(root / "top.bin", 3000)
    write(root / "docs" / "a.txt", 10)
    write(root / "docs" / "empty", 0)
    write(root / "docs" / "deep" / "deeper" / "z.dat", 5000)
    for name in ODD_NAMES:
        write(os.path.join(broot, b"docs", name), len(name))
    os.symlink(b"..", os.path.join(broot, b"docs", b"loop"))  # a link loop: recorded, never followed
    os.symlink(b"top.bin", os.path.join(broot, b"link-to-top"))
    os.mkfifo(root / "docs" / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock_path = str(root / "sock")
    if len(sock_path) < 100:
        sock.bind(sock_path)
    sock.close()
    return {"sockets": 1 if len(sock_path) < 100 else 0}


def regular_files(root: Path) -> dict[bytes, int]:
    """Relative path -> size of every regular file below root (the truth the scan must match)."""
    out = {}
    broot = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(broot):
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and not os.path.islink(full):
                out[os.path.relpath(full, broot)] = os.lstat(full).st_size
    return out


def new_project(tmp_path: Path, name: str = "p", *, car_size: str = "4MiB", shard_size: str = "1MiB",
                target: Path | None = None):
    target = target or tmp_path / "src"
    project, _ = projects.create(projects.ProjectSpec(name, str(target), str(tmp_path / "staging"),
                                                      car_size=car_size, shard_size=shard_size))
    return project


def deny_listing(request, monkeypatch, scan_module, directory: Path) -> None:
    """Make `directory` unreadable: chmod 000 for a normal user; as root (where chmod stops nothing) the local
    walk's lister (core/local_walk.list_directory) raises the same PermissionError the kernel gives another
    user. Scan with walker_mode="threads" after this: a walker process would not see the replacement."""
    if os.geteuid() != 0:
        directory.chmod(0)
        request.addfinalizer(lambda: directory.chmod(0o755))
        return
    suffix = os.fsencode(directory)
    from ptolemy_tui.core import local_walk

    real = local_walk.list_directory

    def refuse(path):
        if os.fsencode(path) == suffix:
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(local_walk, "list_directory", refuse)
