"""A worker on SQLite never loads the PostgreSQL driver.

peewee imports psycopg2 when it is itself imported (~30 ms of CPU per process); a worker knows its store before
anything imports peewee, and one on SQLite marks psycopg2 absent so that import is skipped. Nothing here imports
peewee: it must run first.
"""
from __future__ import annotations

import sys

from ptolemy_tui.settings import current


def store_is_sqlite(url: str | None, ini_path: str | None) -> bool:
    """The precedence of store.db.resolve_url (--db, --db-ini, PTOLEMY_DB, the default SQLite file)."""
    if url:
        return url.startswith("sqlite:")
    if ini_path:
        return False  # an ini file always names a PostgreSQL server
    env = current().db_url
    return env.startswith("sqlite:") if env else True


def skip_postgres_driver(url: str | None, ini_path: str | None) -> bool:
    """Before peewee is imported: on SQLite, make `import psycopg2` fail fast. True when it did."""
    if "peewee" in sys.modules or "psycopg2" in sys.modules or not store_is_sqlite(url, ini_path):
        return False
    sys.modules["psycopg2"] = None  # type: ignore[assignment]  # an ImportError for peewee's optional import
    return True
