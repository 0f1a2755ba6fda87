"""Stores that are not ours, not there, or not databases: one line, exit 2, nothing written anywhere."""
from __future__ import annotations

import hashlib
import os
import sqlite3

import psycopg2
import pytest

from ptolemy_tui.logsetup import mask_secrets
from tests import pgserver
from tests.cli.helpers import run_cli


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _one_line_refusal(result, *words):
    assert result.code == 2, result
    assert result.err.count("\n") == 1 and "Traceback" not in result.err, result.err
    for word in words:
        assert word in result.err, result.err


def test_a_text_file_is_not_a_database_and_is_left_alone(capsys, tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    before = _digest(passwd)
    r = run_cli(capsys, "--db", f"sqlite:///{passwd}", "project", "list")
    _one_line_refusal(r, "is not a SQLite database")
    assert _digest(passwd) == before
    assert sorted(os.listdir(tmp_path)) == ["passwd"]  # no -wal, no -shm beside it


def test_etc_passwd_is_refused(capsys):
    r = run_cli(capsys, "--db", "sqlite:////etc/passwd", "project", "list")
    _one_line_refusal(r, "/etc/passwd is not a SQLite database")


def test_a_damaged_sqlite_file_is_one_line(capsys, tmp_path):
    path = tmp_path / "damaged.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the schema page, after an intact header
    path.write_bytes(bytes(data))
    r = run_cli(capsys, "--db", f"sqlite:///{path}", "project", "list")
    _one_line_refusal(r, "cannot", "damaged.db")


@pytest.mark.parametrize("where", ["/proc/nope/x.db", "{tmp}/typo/ptolemy.db"])
def test_a_db_path_in_a_missing_directory_is_refused_not_created(capsys, tmp_path, where):
    path = where.format(tmp=tmp_path)
    r = run_cli(capsys, "--db", f"sqlite:///{path}", "project", "list")
    _one_line_refusal(r, "does not exist")
    assert not os.path.exists(os.path.dirname(path))


def test_the_default_store_directory_is_still_created(capsys):
    r = run_cli(capsys, "project", "list")
    assert r.code == 0, r.err


def test_a_foreign_sqlite_database_is_never_migrated(capsys, tmp_path):
    path = tmp_path / "theirs.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (9.5)")
    conn.commit()
    conn.close()
    before = _digest(path)
    r = run_cli(capsys, "--db", f"sqlite:///{path}", "project", "list")
    _one_line_refusal(r, "not empty and not a Ptolemy store", "invoices")
    assert _digest(path) == before
    conn = sqlite3.connect(path)
    assert [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["invoices"]
    conn.close()


@pytest.mark.postgres
def test_a_foreign_postgres_database_is_never_migrated(capsys, pg_store_url):
    conn = psycopg2.connect(pg_store_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE invoices (id serial PRIMARY KEY)")
    r = run_cli(capsys, "--db", pg_store_url, "project", "list")
    _one_line_refusal(r, "not empty and not a Ptolemy store")
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        assert [t for (t,) in cur.fetchall()] == ["invoices"]
    conn.close()
    pgserver.reset_schema(pg_store_url)


@pytest.mark.parametrize("url, hidden", [
    ("postgresql://op:p@ss:w@rd@db.example:5432/x", ("p@ss", "w@rd", "op:")),
    ("postgresql://op:hunter2@db.example/x", ("hunter2", "op:")),
    ("s3://AKIDEXAMPLE:wJalr/K7@bucket.example/key", ("wJalr", "AKID")),
    ("https://token@example.com/a", ("token",)),
])
def test_the_whole_user_info_of_any_url_is_masked(url, hidden):
    masked = mask_secrets(f"cannot open {url}: refused")
    for word in hidden:
        assert word not in masked, masked
    assert "***@" in masked


def test_an_unescaped_at_in_a_password_never_reaches_the_error_line(capsys):
    r = run_cli(capsys, "--db", "postgresql://op:se@cret@127.0.0.1:1/x", "project", "list")
    assert r.code == 2 and "se@cret" not in r.err and "cret" not in r.err, r.err
