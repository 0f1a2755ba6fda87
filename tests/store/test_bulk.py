"""Bulk inserts (COPY on PostgreSQL, executemany on SQLite) keep exact bytes, text, NULLs and 64-bit sizes."""
from __future__ import annotations

import threading

import peewee
import pytest

from ptolemy_tui.store import bulk
from ptolemy_tui.store.db import is_postgres
from ptolemy_tui.store.models import Directory, File, Project, database

COLUMNS = ("project_id", "directory_id", "path", "name", "size", "mtime_ns", "inode", "kind", "link_target", "error",
           "etag")


def test_bulk_rows_round_trip(store, monkeypatch):
    monkeypatch.setattr(bulk, "SQLITE_MAX_PARAMS", 40)  # four rows a statement, and a remainder of one
    project = Project.create(name="p", target_dir="/src", staging_dir="/stg", car_size=1 << 34, shard_size=1 << 30,
                             workers=1)
    root = Directory.create(project=project, path=b"", name=b"")
    names = [b"plain", b"tab\there", b"new\nline", b"back\\slash", b"\\x41 literal", b"\xff\xfe bytes",
             "emoji \U0001F680".encode(), b"cr\rx", b"\\N"]
    rows = [(project.id, root.id, b"d/" + n, n, (1 << 40) + i, 1_700_000_000_123_456_789, (1 << 62) + i, "file",
             None if i % 2 else b"t\\\n\x00x", None if i % 3 else "err\tor\\n\nline", None if i % 4 else f'"e\\{i}"')
            for i, n in enumerate(names)]
    with database.atomic():
        bulk.insert_rows(database.obj, File, COLUMNS, rows)
    got = {f.name: f for f in File.select()}
    assert set(got) == set(names)
    for i, n in enumerate(names):
        f = got[n]
        assert f.path == b"d/" + n and f.size == (1 << 40) + i and f.inode == (1 << 62) + i
        assert f.link_target == (None if i % 2 else b"t\\\n\x00x")
        assert f.error == (None if i % 3 else "err\tor\\n\nline")
        assert f.etag == (None if i % 4 else f'"e\\{i}"')


def test_statistics_are_refreshed_after_a_bulk_load_on_postgres(pg_store):
    """Until ANALYZE the planner takes a freshly loaded table for empty (PostgreSQL 14+: reltuples -1) and reads a
    whole project's files for each directory; ANALYZE records the rows at once."""
    project = Project.create(name="p", target_dir="/src", staging_dir="/stg", car_size=1 << 34, shard_size=1 << 30,
                             workers=1)
    root = Directory.create(project=project, path=b"", name=b"")
    rows = [(project.id, root.id, b"f%d" % i, b"f%d" % i, i, 0, i, "file", None, None, None) for i in range(500)]
    with database.atomic():
        bulk.insert_rows(database.obj, File, COLUMNS, rows)

    def estimated() -> float:
        return database.execute_sql("SELECT reltuples FROM pg_class WHERE relname = %s", ("file",)).fetchone()[0]

    assert estimated() < 500
    bulk.refresh_statistics(database.obj, File._meta.table_name)
    assert estimated() == 500


def _file_rows(project, root, names):
    return [(project.id, root.id, b"d/" + n, n, len(n), 0, i, "file", None, None, None) for i, n in enumerate(names)]


def _project_and_root():
    project = Project.create(name="p", target_dir="/src", staging_dir="/stg", car_size=1 << 34, shard_size=1 << 30,
                             workers=1)
    return project, Directory.create(project=project, path=b"", name=b"")


def test_a_row_stream_commits_its_batches_with_the_transaction_and_reads_go_beside_it(store):
    """Batches streamed through one COPY (PostgreSQL) or inserted as they come (SQLite) are the caller's
    transaction's rows; meanwhile the side reader sees committed rows only."""
    project, root = _project_and_root()
    names = [b"f%04d\t%s" % (i, "\u00e9".encode()) for i in range(3000)]
    rows = _file_rows(project, root, names)
    with bulk.side_reader(database.obj) as read:
        with database.atomic():
            stream = bulk.RowStream(database.obj, File, COLUMNS)
            for start in range(0, len(rows), 700):
                stream.add(rows[start:start + 700])
                if is_postgres():  # SQLite reads through the writing connection itself
                    assert read('SELECT count(*) FROM "file"', ()) == [(0,)]
            stream.close()
            assert File.select().count() == 3000  # the caller's connection is its own again, rows visible
        assert read('SELECT count(*) FROM "file"', ()) == [(3000,)]
    assert sorted(bytes(f.name) for f in File.select()) == sorted(names)


def test_an_aborted_row_stream_leaves_nothing_and_frees_the_connection(store):
    project, root = _project_and_root()
    rows = _file_rows(project, root, [b"a%d" % i for i in range(2000)])
    try:
        with database.atomic():
            stream = bulk.RowStream(database.obj, File, COLUMNS)
            stream.add(rows[:1000])
            stream.add(rows[1000:])
            try:
                raise KeyError("the producer failed")
            finally:
                stream.abort()
    except KeyError:
        pass
    assert File.select().count() == 0
    assert Project.select().count() == 1  # the connection answers again


def test_a_refused_bulk_insert_raises_peewee_s_error_not_the_driver_s(store):
    """The worker's retries and the services sort store errors by peewee's classes; a bulk insert's must be
    those too, on both stores."""
    project, root = _project_and_root()
    with pytest.raises(peewee.IntegrityError):
        with database.atomic():
            bulk.insert_rows(database.obj, File, COLUMNS, _file_rows(project, root, [b"same"] * 2))
    assert File.select().count() == 0


def test_a_row_the_server_refuses_fails_the_stream_in_the_caller_s_thread(store):
    """A value the store rejects (a duplicate path) is raised by close() or a later add(), in the caller's
    thread, and the transaction leaves nothing."""
    project, root = _project_and_root()
    rows = _file_rows(project, root, [b"same"] * 2)
    with pytest.raises(peewee.IntegrityError):
        with database.atomic():
            stream = bulk.RowStream(database.obj, File, COLUMNS)
            try:
                stream.add(rows)
                stream.close()
            finally:
                stream.abort()
    assert File.select().count() == 0


def test_background_copy_commits_each_batch_and_reports_a_refused_one(pg_store):
    """PostgreSQL's loader: batches stored on its own connection (visible to the caller's once drained, each
    committed by itself); a batch the server refuses is raised by drain(), the batches before it stay."""
    project, root = _project_and_root()
    loader = bulk.BackgroundCopy(database.obj, File, COLUMNS)
    try:
        for start in range(0, 3000, 1000):
            names = [b"n%05d" % i for i in range(start, start + 1000)]
            loader.submit(bulk.copy_text(File, COLUMNS, _file_rows(project, root, names)).getvalue())
        loader.drain()
        assert File.select().count() == 3000
        loader.submit(bulk.copy_text(File, COLUMNS, _file_rows(project, root, [b"n00001"])).getvalue())
        with pytest.raises(peewee.IntegrityError):
            loader.drain()
    finally:
        loader.close()
    assert File.select().count() == 3000
    assert not [t for t in threading.enumerate() if t.name == "copy-batches"]
