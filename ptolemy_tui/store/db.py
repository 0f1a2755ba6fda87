"""Opening the store: SQLite by default (WAL, busy timeout, foreign keys) or PostgreSQL, migrated on open."""
from __future__ import annotations

import logging
import os
import urllib.parse
from pathlib import Path

import peewee
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase
from playhouse.shortcuts import ReconnectMixin

from ptolemy_tui import paths
from ptolemy_tui.errors import UsageError
from ptolemy_tui.inifile import read_ini
from ptolemy_tui.logsetup import mask_secrets
from ptolemy_tui.settings import current as current_settings
from ptolemy_tui.store import schema
from ptolemy_tui.store import models
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


class PooledReconnectingPostgres(ReconnectMixin, PooledPostgresqlDatabase):
    """The TUI's store: its polling threads come and go (one per refresh), so connections are kept in a pool
    and reused instead of one TCP connect and authentication per poll; a connection the server dropped is
    discarded by the pool and replaced, as ReconnectingPostgres does."""

    reconnect_errors = ReconnectingPostgres.reconnect_errors


POOL = {"max_connections": 8, "stale_timeout": 300}  # a handful of readers; idle ones re-opened after 5 min


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
    from_env = current_settings().db_url
    if from_env:
        return from_env
    return f"sqlite:///{paths.default_db_path()}"


def describe_url(url: str) -> str:
    """The URL with its password masked: safe for logs, errors and the TUI."""
    return mask_secrets(url)



# PostgreSQL session limits, so a worker that stalls, dies or is cut off inside a transaction cannot hold its
# locks for hours (until the kernel's TCP timeout): the server ends a session idle inside a transaction, and
# TCP keepalives (libpq's parameters) find a dead peer within about half a minute either way round.
KEEPALIVES = dict(keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3, tcp_user_timeout=30000)


def _pg_session_options(operator: bool) -> str:
    knobs = current_settings()
    idle_ms = int(knobs.pg_idle_tx_seconds * 1000)
    options = f"-c idle_in_transaction_session_timeout={idle_ms}"
    if operator:
        lock_ms = int(knobs.pg_lock_seconds * 1000)
        options += f" -c lock_timeout={lock_ms}"
    return options


def _check_sqlite_path(path: str, url: str, *, create_parent: bool) -> None:
    """Refuse what would silently become a new empty store or be read as one: a typo'd directory, a file that is
    not a SQLite database (/etc/passwd), a directory."""
    full = Path(path).expanduser()
    parent = full.parent
    if create_parent:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the directory {parent} for the database: {exc.strerror}; "
                             "pass --db sqlite:///PATH in a writable directory") from None
    elif not parent.is_dir():
        raise UsageError(f"the directory {parent} of the database {describe_url(url)} does not exist; "
                         "create it first or correct the --db path")
    if full.is_dir():
        raise UsageError(f"--db {describe_url(url)} is a directory; give a database file path")
    # Looked at through SQLite only, never a plain open(): closing any descriptor of the file drops every POSIX
    # lock this process holds on it, so another process ending its connection would take itself for the last
    # one and checkpoint the WAL away under this process's open connections (stale reads, "malformed").
    try:
        size = full.stat().st_size
    except FileNotFoundError:
        return
    if not os.access(full, os.R_OK):
        raise UsageError(f"cannot read the database {full}: permission denied; check --db and its permissions")
    if size:
        _refuse_foreign_sqlite(full, url)


def _refuse_foreign_sqlite(full: Path, url: str) -> None:
    """Look read-only before peewee's pragmas touch the file (journal_mode=wal rewrites its header)."""
    import sqlite3  # noqa: PLC0415

    try:
        conn = sqlite3.connect(f"{full.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = [name for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise UsageError(f"{full} is not a SQLite database; point --db at a Ptolemy database or a new "
                             "file") from None
        raise UsageError(f"cannot open the database {describe_url(url)}: {_first_line(exc)}; it may be damaged: "
                         "restore it from a backup or point --db elsewhere") from None
    if tables and models.Meta._meta.table_name not in tables:
        raise _foreign(url, tables)


def _foreign(url: str, tables: list[str]) -> UsageError:
    shown = ", ".join(tables[:3]) + (", …" if len(tables) > 3 else "")
    return UsageError(f"the database {describe_url(url)} is not empty and not a Ptolemy store "
                      f"({len(tables)} other table(s): {shown}); point --db at an empty or Ptolemy database")


class StoreUnreachable(UsageError):
    """The store could not be connected to (down, unreachable, refused): a worker waits for it to come back."""


def make_database(url: str, *, create_parent: bool = False, operator: bool = True,
                  pooled: bool = False) -> peewee.Database:
    """`create_parent`: the default store's directory may be created; a path the operator typed must exist.
    `operator`: PostgreSQL sessions of operator commands get a lock timeout (workers retry on their own).
    `pooled`: closed connections are kept for the next thread (the TUI's pollers) instead of closed."""
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
            _check_sqlite_path(path, url, create_parent=create_parent)
        # Every transaction is BEGIN IMMEDIATE: it takes the write lock up front (waiting out busy_timeout). A
        # deferred one that reads first fails at once with "database is locked" when it comes to write if
        # another process committed meanwhile (WAL cannot upgrade a stale snapshot), busy timeout or not.
        if pooled:
            # connections move between the pollers' threads (one at a time): sqlite3 must allow that
            return PooledSqliteDatabase(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False, lock_type="IMMEDIATE",
                                        **POOL)
        return peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=30, lock_type="IMMEDIATE")
    if scheme in ("postgres", "postgresql"):
        if not parsed.path.strip("/"):
            raise UsageError(f"no database name in {describe_url(url)}: use postgresql://USER:PASS@HOST:PORT/DB")
        try:
            port = parsed.port or 5432
        except ValueError:
            raise UsageError(f"bad port in {describe_url(url)}: use postgresql://USER:PASS@HOST:PORT/DB") from None
        cls = PooledReconnectingPostgres if pooled else ReconnectingPostgres
        extra = POOL if pooled else {}
        return cls(
            urllib.parse.unquote(parsed.path.lstrip("/")),
            user=urllib.parse.unquote(parsed.username) if parsed.username else None,
            password=urllib.parse.unquote(parsed.password) if parsed.password else None,
            host=parsed.hostname or "localhost",
            port=port,
            connect_timeout=10,
            autorollback=True,
            options=_pg_session_options(operator),
            **KEEPALIVES,
            **extra,
        )
    raise UsageError(f"unsupported database URL {describe_url(url)}: use sqlite:///PATH or postgresql://USER:PASS@HOST:PORT/DB")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return mask_secrets(text.splitlines()[0] if text else exc.__class__.__name__)


def _refuse_foreign(db: peewee.Database, resolved: str) -> None:
    """Never add our tables to (or stamp a version into) a database that already holds someone else's."""
    if schema.current_version(db) > 0:
        return
    tables = db.get_tables()
    if tables:
        raise _foreign(resolved, tables)


def open_database(url: str | None = None, ini_path: str | None = None, *, migrate: bool = True,
                  operator: bool = True, pooled: bool = False) -> peewee.Database:
    """Bind the models to the store named by the arguments, connect, and bring the schema up to date."""
    resolved = resolve_url(url, ini_path)
    default = not url and not ini_path and not current_settings().db_url
    close_database()  # opened again (the demo, then its TUI on a pool): the models leave the first one for good
    db = make_database(resolved, create_parent=default, operator=operator, pooled=pooled)
    try:
        db.connect(reuse_if_open=True)
        if isinstance(db, peewee.SqliteDatabase):
            db.execute_sql("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header and schema
    except peewee.DatabaseError as exc:  # OperationalError, and "file is not a database" / "malformed" too
        if not db.is_closed():
            db.close()
        raise (StoreUnreachable if isinstance(exc, peewee.OperationalError) else UsageError)(f"cannot open the database {describe_url(resolved)}: {_first_line(exc)}; "
                         "check --db or PTOLEMY_DB") from None
    database.initialize(db)
    try:
        _refuse_foreign(db, resolved)
        if migrate:
            schema.migrate(db)
    except peewee.DatabaseError as exc:
        db.close()
        raise UsageError(f"cannot use the database {describe_url(resolved)}: {_first_line(exc)}; "
                         "it may be damaged: restore it from a backup or point --db elsewhere") from None
    except UsageError:
        db.close()
        raise
    log.debug("store open: %s", describe_url(resolved))
    return db


def close_database() -> None:
    db = database.obj
    if db is not None and not db.is_closed():
        db.close()
    if isinstance(db, (PooledSqliteDatabase, PooledPostgresqlDatabase)):
        db.close_all()


def is_postgres(db: peewee.Database | None = None) -> bool:
    db = db if db is not None else database.obj
    return isinstance(db, peewee.PostgresqlDatabase)
