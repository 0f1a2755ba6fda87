"""Bulk inserts (COPY on PostgreSQL, executemany on SQLite) keep exact bytes, text, NULLs and 64-bit sizes."""
from __future__ import annotations

from ptolemy_tui.store import bulk
from ptolemy_tui.store.models import Directory, File, Project, database

COLUMNS = ("project_id", "directory_id", "path", "name", "size", "mtime_ns", "inode", "kind", "link_target", "error")


def test_bulk_rows_round_trip(store, monkeypatch):
    monkeypatch.setattr(bulk, "SQLITE_MAX_PARAMS", 40)  # four rows a statement, and a remainder of one
    project = Project.create(name="p", target_dir="/src", staging_dir="/stg", car_size=1 << 34, shard_size=1 << 30,
                             workers=1)
    root = Directory.create(project=project, path=b"", name=b"")
    names = [b"plain", b"tab\there", b"new\nline", b"back\\slash", b"\\x41 literal", b"\xff\xfe bytes",
             "emoji \U0001F680".encode(), b"cr\rx", b"\\N"]
    rows = [(project.id, root.id, b"d/" + n, n, (1 << 40) + i, 1_700_000_000_123_456_789, (1 << 62) + i, "file",
             None if i % 2 else b"t\\\n\x00x", None if i % 3 else "err\tor\\n\nline")
            for i, n in enumerate(names)]
    with database.atomic():
        bulk.insert_rows(database.obj, File._meta.table_name, COLUMNS, rows)
    got = {f.name: f for f in File.select()}
    assert set(got) == set(names)
    for i, n in enumerate(names):
        f = got[n]
        assert f.path == b"d/" + n and f.size == (1 << 40) + i and f.inode == (1 << 62) + i
        assert f.link_target == (None if i % 2 else b"t\\\n\x00x")
        assert f.error == (None if i % 3 else "err\tor\\n\nline")


def test_statistics_are_refreshed_after_a_bulk_load_on_postgres(pg_store):
    """Until ANALYZE the planner takes a freshly loaded table for empty (PostgreSQL 14+: reltuples -1) and reads a
    whole project's files for each directory; ANALYZE records the rows at once."""
    project = Project.create(name="p", target_dir="/src", staging_dir="/stg", car_size=1 << 34, shard_size=1 << 30,
                             workers=1)
    root = Directory.create(project=project, path=b"", name=b"")
    rows = [(project.id, root.id, b"f%d" % i, b"f%d" % i, i, 0, i, "file", None, None) for i in range(500)]
    with database.atomic():
        bulk.insert_rows(database.obj, File._meta.table_name, COLUMNS, rows)

    def estimated() -> float:
        return database.execute_sql("SELECT reltuples FROM pg_class WHERE relname = %s", ("file",)).fetchone()[0]

    assert estimated() < 500
    bulk.refresh_statistics(database.obj, File._meta.table_name)
    assert estimated() == 500
