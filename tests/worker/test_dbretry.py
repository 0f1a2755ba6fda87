"""dbretry waits out what waiting can fix (a lock held elsewhere, a dropped connection) and lets every other store
error through at once, so a schema or SQL mistake never looks like a five-minute outage. Real SQLite files and a
real PostgreSQL server; each lock is released from the retry's own notice, so nothing races a clock."""
from __future__ import annotations

import sqlite3

import peewee
import psycopg2
import pytest

from ptolemy_tui.store.models import Project, database
from ptolemy_tui.worker import dbretry


def _project() -> Project:
    return Project.create(name="p", target_dir="/src", staging_dir="/stg", car_size=1 << 30, shard_size=1 << 20,
                          workers=1)


class _Calls:
    def __init__(self, fn):
        self.fn, self.count, self.notices = fn, 0, []

    def __call__(self):
        self.count += 1
        return self.fn()


def _raised_at_once(sql: str, match: str) -> None:
    """The statement's store error comes out of the first try: no retry, no "store unavailable" notice."""
    calls = _Calls(lambda: database.execute_sql(sql).fetchall())
    with pytest.raises(peewee.OperationalError, match=match) as caught:
        dbretry.retrying(calls, "reading", notify=calls.notices.append)
    assert calls.count == 1 and calls.notices == []
    assert not dbretry.is_transient(caught.value)


def test_a_missing_table_on_sqlite_is_raised_at_once(sqlite_store):
    _raised_at_once("SELECT * FROM no_such_table", "no such table")


def test_a_locked_sqlite_file_is_waited_out(sqlite_store, tmp_path):
    project = _project()
    holder = sqlite3.connect(str(tmp_path / "ptolemy.db"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write lock

    def rename():
        database.execute_sql("PRAGMA busy_timeout = 0")  # fail at once instead of waiting 30 s in SQLite
        return Project.update(name="renamed").where(Project.id == project.id).execute()

    def notice(text: str) -> None:
        notices.append(text)
        holder.execute("ROLLBACK")  # the other writer finishes while we back off

    notices: list[str] = []
    calls = _Calls(rename)
    assert dbretry.retrying(calls, "renaming", notify=notice) == 1
    assert calls.count == 2 and "locked" in notices[0]
    assert Project.get_by_id(project.id).name == "renamed"
    holder.close()


def test_a_non_transient_postgresql_error_is_raised_at_once(pg_store):
    # 55000 object_not_in_prerequisite_state: an OperationalError in psycopg2, and no retry can make it succeed.
    database.execute_sql("CREATE SEQUENCE lonely")
    _raised_at_once("SELECT currval('lonely')", "currval")


def test_a_postgresql_lock_timeout_is_waited_out(pg_store, pg_store_url):
    project = _project()
    holder = psycopg2.connect(pg_store_url)
    with holder.cursor() as cur:
        cur.execute("SELECT id FROM project WHERE id = %s FOR UPDATE", (project.id,))  # holds the row

    def rename():
        with database.atomic():
            database.execute_sql("SET LOCAL lock_timeout = '50ms'")
            return Project.update(name="renamed").where(Project.id == project.id).execute()

    def notice(text: str) -> None:
        notices.append(text)
        holder.rollback()

    notices: list[str] = []
    calls = _Calls(rename)
    assert dbretry.retrying(calls, "renaming", notify=notice) == 1
    assert calls.count == 2 and "lock timeout" in notices[0]
    assert Project.get_by_id(project.id).name == "renamed"
    holder.close()


def test_a_killed_postgresql_session_is_reconnected(pg_store, pg_store_url):
    _project()
    killer = psycopg2.connect(pg_store_url)
    killer.autocommit = True
    calls = _Calls(lambda: Project.select().count())
    pid = database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]

    def count_after_kill():
        # Inside a transaction, where the store's own reconnect-and-retry must not act (it could lose writes):
        # the server ends our session (as on a failover) just before the query, and dbretry re-runs the whole.
        with database.atomic():
            if calls.count == 1:
                with killer.cursor() as cur:
                    cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            return database.execute_sql("SELECT count(*) FROM project").fetchone()[0]

    calls.fn = count_after_kill
    assert dbretry.retrying(calls, "counting", notify=calls.notices.append) == 1
    assert calls.count == 2 and len(calls.notices) == 1
    killer.close()
