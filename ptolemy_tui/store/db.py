"""Opening the store: SQLite by default (WAL, busy timeout, foreign keys) or PostgreSQL, migrated on open."""
from __future__ import annotations

import logging
import os
import urllib.parse
from pathlib import Path

import peewee
from playhouse.shortcuts import ReconnectMixin

from ptolemy_tui import paths
from ptolemy_tui.errors import UsageError
from ptolemy_tui.inifile import read_ini
from ptolemy_tui.logsetup import mask_secrets
from ptolemy_tui.store import schema
from ptolemy_tui.store.models import database

log = logging.getLogger(__name__)

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 30000,  # workers and the TUI share the file; wait for a writer instead of failing
    "foreign_keys": 1,
    "synchronous": "normal",
    "cache_size": -64 * 1024,
}


class ReconnectingPostgres(ReconnectMixin, peewee.PostgresqlDatabase):
    """Reconnects after a PostgreSQL restart instead of failing every later query of a long-running TUI or CLI.

    peewee's mixin ships MySQL's error list; these are psycopg2's words for a connection the server dropped.
    Outside a transaction only (the mixin re-raises inside one, where silent retry could lose writes).
    """

    reconnect_errors = (
        (peewee.OperationalError, "server closed the connection"),
        (peewee.OperationalError, "terminating connection"),
        (peewee.OperationalError, "could not receive data from server"),
        (peewee.OperationalError, "ssl connection has been closed"),
        (peewee.InterfaceError, "connection already closed"),
    )


def _ini_url(ini_path: str) -> str:
    parser = read_ini(ini_path, "--db-ini")
    if not parser.has_section("database"):
        raise UsageError(f"--db-ini {ini_path} has no [database] section; add host, db_name, db_user, pass")
    section = parser["database"]
    missing = [key for key in ("host", "db_name", "db_user") if not section.get(key)]
    if missing:
        raise UsageError(f"--db-ini {ini_path} lacks {', '.join(missing)} in [database]; add them")
    user = urllib.parse.quote(section["db_user"], safe="")
    password = section.get("pass", "")
    auth = f"{user}:{urllib.parse.quote(password, safe='')}" if password else user
    port = section.get("port", "5432")
    return f"postgresql://{auth}@{section['host']}:{port}/{urllib.parse.quote(section['db_name'], safe='')}"


def resolve_url(url: str | None = None, ini_path: str | None = None) -> str:
    """--db wins, then --db-ini, then PTOLEMY_DB, then the SQLite file in the XDG data dir."""
    if url:
        return url
    if ini_path:
        return _ini_url(ini_path)
    if os.environ.get("PTOLEMY_DB"):
        return os.environ["PTOLEMY_DB"]
    return f"sqlite:///{paths.default_db_path()}"


def describe_url(url: str) -> str:
    """The URL with its password masked: safe for logs, errors and the TUI."""
    return mask_secrets(url)


def make_database(url: str) -> peewee.Database:
    parsed = urllib.parse.urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme == "sqlite":
        # sqlite:///relative/path or sqlite:////absolute/path; sqlite:///:memory: for tests
        raw = url.split("://", 1)[1]
        path = raw[1:] if raw.startswith("/") else raw
        if raw.startswith("//"):
            path = raw[1:]
        if not path:
            raise UsageError(f"no file in database URL {describe_url(url)}: use sqlite:///PATH")
        if path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=30)
    if scheme in ("postgres", "postgresql"):
        if not parsed.path.strip("/"):
            raise UsageError(f"no database name in {describe_url(url)}: use postgresql://USER:PASS@HOST:PORT/DB")
        try:
            port = parsed.port or 5432
        except ValueError:
            raise UsageError(f"bad port in {describe_url(url)}: use postgresql://USER:PASS@HOST:PORT/DB") from None
        return ReconnectingPostgres(
            urllib.parse.unquote(parsed.path.lstrip("/")),
            user=urllib.parse.unquote(parsed.username) if parsed.username else None,
            password=urllib.parse.unquote(parsed.password) if parsed.password else None,
            host=parsed.hostname or "localhost",
            port=port,
            connect_timeout=10,
            autorollback=True,
        )
    raise UsageError(f"unsupported database URL {describe_url(url)}: use sqlite:///PATH or postgresql://USER:PASS@HOST:PORT/DB")


def open_database(url: str | None = None, ini_path: str | None = None, *, migrate: bool = True) -> peewee.Database:
    """Bind the models to the store named by the arguments, connect, and bring the schema up to date."""
    resolved = resolve_url(url, ini_path)
    db = make_database(resolved)
    try:
        db.connect(reuse_if_open=True)
    except peewee.OperationalError as exc:
        detail = mask_secrets(str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__)
        raise UsageError(f"cannot open the database {describe_url(resolved)}: {detail}; check --db or PTOLEMY_DB") from None
    database.initialize(db)
    if migrate:
        schema.migrate(db)
    log.debug("store open: %s", describe_url(resolved))
    return db


def close_database() -> None:
    db = database.obj
    if db is not None and not db.is_closed():
        db.close()


def is_postgres(db: peewee.Database | None = None) -> bool:
    db = db if db is not None else database.obj
    return isinstance(db, peewee.PostgresqlDatabase)
