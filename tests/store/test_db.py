"""The store opens on SQLite and PostgreSQL, migrates, round-trips exact bytes and 64-bit sizes, and refuses
stores from the future."""
from __future__ import annotations

import os

import peewee
import pytest

from ptolemy_tui.errors import UsageError
from ptolemy_tui.store import db, schema
from ptolemy_tui.store.models import Directory, File, Meta, Project


def _project(**kw) -> Project:
    fields = dict(name="p", target_dir="/src", staging_dir="/stg", car_size=1 << 34, shard_size=1 << 30, workers=2)
    fields.update(kw)
    return Project.create(**fields)


def test_migrates_to_current_version(store):
    assert schema.current_version(store) == schema.SCHEMA_VERSION
    assert schema.migrate(store) == schema.SCHEMA_VERSION  # idempotent


def test_paths_round_trip_exact_bytes_and_sizes_are_64_bit(store):
    project = _project()
    root = Directory.create(project=project, path=b"", name=b"")
    names = [b"plain.txt", b"with 'quote\" and space", b"new\nline", "emoji \U0001F680".encode(), b"latin1-\xe9\xff"]
    for name in names:
        File.create(project=project, directory=root, path=b"dir/" + name, name=name, size=(1 << 40) + 7,
                    mtime_ns=1_700_000_000_123_456_789, inode=(1 << 62) + 5)
    stored = {f.path: f for f in File.select()}
    assert set(stored) == {b"dir/" + n for n in names}
    for f in stored.values():
        assert isinstance(f.path, bytes)
        assert f.size == (1 << 40) + 7
        assert f.mtime_ns == 1_700_000_000_123_456_789
        assert f.inode == (1 << 62) + 5
    # parameterised queries: a name with quotes is found by equality
    assert File.get(File.path == b"dir/with 'quote\" and space").name == b"with 'quote\" and space"


def test_newer_schema_is_refused_with_a_clear_message(store, store_url):
    Meta.update(value=str(schema.SCHEMA_VERSION + 1)).where(Meta.key == "schema_version").execute()
    db.close_database()
    with pytest.raises(UsageError, match="newer than this ptolemy"):
        db.open_database(store_url)


def test_deleting_a_project_cascades(store):
    project = _project()
    root = Directory.create(project=project, path=b"", name=b"")
    File.create(project=project, directory=root, path=b"a", name=b"a")
    project.delete_instance(recursive=True)
    assert File.select().count() == 0 and Directory.select().count() == 0


def test_sqlite_pragmas(sqlite_store):
    assert sqlite_store.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sqlite_store.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert sqlite_store.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 30000


def test_opening_the_store_again_keeps_this_process_s_hold_on_the_file(tmp_path):
    """The demo opens its store, then its TUI opens it again on a pool. Checking the file must not close a
    descriptor of it (that drops every POSIX lock of this process on it): another process ending its connection
    would take itself for the last one and checkpoint the WAL away under ours (stale reads, then "malformed")."""
    import subprocess
    import sys

    path = tmp_path / "s.db"
    first = db.make_database(f"sqlite:///{path}")
    first.connect()
    first.execute_sql(f"CREATE TABLE {Meta._meta.table_name} (key TEXT, value TEXT)")  # a Ptolemy store's mark
    first.execute_sql("CREATE TABLE t (x INTEGER)")
    first.execute_sql("INSERT INTO t VALUES (1)")
    db.make_database(f"sqlite:///{path}", pooled=True)  # the check of an existing file, as a second open does
    subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                    "c.execute('INSERT INTO t VALUES (2)'); c.commit(); c.close()", str(path)], check=True)
    try:
        assert os.path.exists(f"{path}-wal")  # the other process knew it was not the last connection
        assert [x for (x,) in first.execute_sql("SELECT x FROM t ORDER BY x")] == [1, 2]
    finally:
        first.close()


@pytest.mark.parametrize("pooled", [False, True])
def test_sqlite_transactions_take_the_write_lock_up_front(tmp_path, pooled):
    """A transaction that reads, then writes after another process committed, cannot upgrade under WAL and
    fails at once ("database is locked", busy timeout or not): every transaction is BEGIN IMMEDIATE instead, so
    another writer is held off from the first statement on."""
    import sqlite3

    path = tmp_path / "s.db"
    store = db.make_database(f"sqlite:///{path}", pooled=pooled)
    store.connect()
    store.execute_sql("CREATE TABLE t (x INTEGER)")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with store.atomic():
            store.execute_sql("SELECT COUNT(*) FROM t").fetchone()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("INSERT INTO t VALUES (1)")
            store.execute_sql("INSERT INTO t VALUES (2)")
        other.execute("INSERT INTO t VALUES (3)")
        assert sorted(x for (x,) in other.execute("SELECT x FROM t")) == [2, 3]
    finally:
        other.close()
        store.close()


def test_default_is_sqlite_in_xdg_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    database = db.open_database()
    try:
        assert isinstance(database, peewee.SqliteDatabase)
        assert os.path.exists(tmp_path / "xdg" / "ptolemy" / "ptolemy.db")
    finally:
        db.close_database()


def test_env_url_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("PTOLEMY_DB", f"sqlite:///{tmp_path / 'env.db'}")
    db.open_database()
    db.close_database()
    assert (tmp_path / "env.db").exists()


def test_db_ini_builds_a_postgres_url_and_hides_the_password(tmp_path):
    ini = tmp_path / "database.ini"
    ini.write_text("[database]\nhost = db.example\ndb_name = ptolemy\ndb_user = op\npass = s3cr:et@x\n")
    url = db.resolve_url(ini_path=str(ini))
    assert url == "postgresql://op:s3cr%3Aet%40x@db.example:5432/ptolemy"
    assert "s3cr" not in db.describe_url(url)


def test_ini_errors_are_usage_errors(tmp_path):
    ini = tmp_path / "database.ini"
    ini.write_text("[other]\nx=1\n")
    with pytest.raises(UsageError, match=r"no \[database\] section"):
        db.resolve_url(ini_path=str(ini))
    with pytest.raises(UsageError, match="cannot read"):
        db.resolve_url(ini_path=str(tmp_path / "missing.ini"))


def test_unreachable_postgres_is_one_line_without_password():
    with pytest.raises(UsageError) as info:
        db.open_database("postgresql://op:topsecret@127.0.0.1:1/nodb")
    message = str(info.value)
    assert "topsecret" not in message and "\n" not in message
    assert message.startswith("cannot open the database postgresql://***@127.0.0.1:1/nodb")


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://", "postgresql://127.0.0.1:5432/"])
def test_bad_urls(url):
    with pytest.raises(UsageError):
        db.open_database(url)
