"""store.items: a packing's items land as the same rows whichever path takes them (whole files by id on SQLite,
rows otherwise), in item order, inside the caller's transaction."""
from __future__ import annotations

import peewee
import pytest

from ptolemy_tui.core.packing import Piece, pieces_of
from ptolemy_tui.store import items
from ptolemy_tui.store.models import Container, ContainerItem, Directory, File, Project, database

SHARD = 100


def _files(project):
    root = Directory.create(project=project, path=b"", name=b"")
    specs = [(b"a.txt", 10, "file", None), (b"big.bin", 250, "file", None), (b"link", 0, "symlink", b"a.txt"),
             (b"\xff name\twith\nbytes", 0, "file", None), (b"z.dat", 1 << 40, "file", None)]
    return [File.create(project=project, directory=root, path=p, name=p, size=size, kind=kind, link_target=target)
            for p, size, kind, target in specs]


def _pieces(files):
    pieces = []
    for f in files:
        if f.kind == "symlink":
            pieces.append(Piece(f.id, bytes(f.path), 0, 0, None, "symlink", len(bytes(f.link_target))))
        else:
            pieces.extend(pieces_of(f.id, bytes(f.path), f.size, SHARD if f.size < 1 << 40 else 1 << 41))
    return pieces


def _stored(container):
    return [(r.file_id, r.seq, r.offset, r.length, r.shard_index, bytes(r.car_path))
            for r in ContainerItem.select().where(ContainerItem.container == container).order_by(ContainerItem.seq)]


def _expected(pieces, first):
    return [(p[0], n, p[2], p[3], p[4], bytes(p[1])) for n, p in enumerate(pieces, first)]


@pytest.fixture
def packed(store):
    project = Project.create(name="p", target_dir="/src", staging_dir="/stg", car_size=1 << 34, shard_size=SHARD,
                             workers=1)
    return Container.create(project=project, seq=1), _pieces(_files(project))


def test_whole_files_shards_and_symlinks_are_stored_as_their_rows_in_item_order(packed):
    container, pieces = packed
    assert [p[4] for p in pieces] == [None, 0, 1, 2, None, None, None]  # whole, three shards, symlink, whole, whole
    stream = items.ItemStream(database.obj)
    assert stream.by_id == (not isinstance(database.obj, peewee.PostgresqlDatabase))  # this SQLite has JSON
    with database.atomic():
        stream.add(container.id, 5, pieces[:3])  # two batches of one container: numbering goes on from the first
        stream.add(container.id, 8, pieces[3:])
        stream.close()
    assert _stored(container) == _expected(pieces, 5)


def test_without_json_in_sqlite_every_item_is_a_row_and_the_rows_are_the_same(packed, monkeypatch):
    container, pieces = packed
    monkeypatch.setattr(items, "_has_json", lambda db: False)
    stream = items.ItemStream(database.obj)
    assert not stream.by_id
    with database.atomic():
        stream.add(container.id, 0, pieces)
        stream.close()
    assert _stored(container) == _expected(pieces, 0)


def test_a_whole_file_item_whose_file_is_gone_is_an_error_not_a_silent_gap(sqlite_store):
    project = Project.create(name="p", target_dir="/src", staging_dir="/stg", car_size=1 << 34, shard_size=SHARD,
                             workers=1)
    container = Container.create(project=project, seq=1)
    pieces = _pieces(_files(project))
    stream = items.ItemStream(database.obj)
    with pytest.raises(RuntimeError, match="2 of 3 whole-file items"):
        with database.atomic():
            stream.add(container.id, 0, [pieces[0], pieces[5], (10_000, b"gone", 0, 1, None, "file", 0)])
    assert ContainerItem.select().count() == 0  # the transaction rolled back whole
