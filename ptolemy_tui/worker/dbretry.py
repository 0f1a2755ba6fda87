"""Riding out a lost store connection: a PostgreSQL restart, a failover, SQLite busy beyond its timeout.

peewee raises OperationalError/InterfaceError for all of these. A worker must not die with its container half
built because the server restarted, so store calls made by workers go through `retrying`, which drops the
broken connection (this thread's only: peewee keeps one per thread) and tries again with backoff.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

import peewee

from ptolemy_tui.store.models import database

log = logging.getLogger(__name__)

T = TypeVar("T")
STORE_ERRORS = (peewee.OperationalError, peewee.InterfaceError)  # what a store call may raise; is_transient sorts it
DEFAULT_PATIENCE = 300.0  # a worker waits this long for the store to come back before giving up


def drop_connection() -> None:
    """Forget this thread's connection so the next query connects afresh."""
    db = database.obj
    if db is None:
        return
    try:
        while db.transaction_depth():  # a broken transaction must not keep close() from running
            db.pop_transaction()
        if not db.is_closed():
            db.close()
    except Exception:  # noqa: BLE001 - the connection is already broken; closing it may fail too
        try:
            db._state.reset()  # peewee's per-thread state: the connection object is abandoned
        except Exception:  # noqa: BLE001
            pass


# SQLSTATEs that a retry can outlast: connection exceptions (class 08), serialization failure, deadlock, lock and
# statement timeouts, an idle-in-transaction timeout, the server shutting down or starting, too many connections.
_TRANSIENT_SQLSTATE_CLASSES = ("08",)
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57014", "25P03", "57P01", "57P02", "57P03", "53300"}
# SQLite: another process holds the lock past the busy timeout. Anything else ("no such table", "no such column",
# a syntax error) is a bug or a schema mismatch, which no amount of waiting fixes.
_TRANSIENT_SQLITE = ("database is locked", "database table is locked", "database schema is locked", "busy")


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception behind peewee's wrapper (peewee keeps it as `orig`)."""
    return getattr(exc, "orig", None) or exc.__cause__ or exc


def is_transient(exc: BaseException) -> bool:
    """True for a store error that waiting can outlast (the server gone, a lock held elsewhere); False for one
    that would fail again the same way (a schema or syntax error), which must surface at once."""
    if isinstance(exc, peewee.InterfaceError):  # the connection is closed: reconnecting is the cure
        return True
    if not isinstance(exc, peewee.OperationalError):
        return False
    driver = _driver_error(exc)
    code = getattr(driver, "pgcode", None)
    if code is not None:
        return code in _TRANSIENT_SQLSTATES or code[:2] in _TRANSIENT_SQLSTATE_CLASSES
    if type(driver).__module__.startswith("psycopg2"):
        return True  # no SQLSTATE: the client lost or could not open the connection
    text = str(driver).lower()
    return any(marker in text for marker in _TRANSIENT_SQLITE)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def retrying(fn: Callable[[], T], what: str, patience: float = DEFAULT_PATIENCE,
             notify: Callable[[str], None] | None = None) -> T:
    """Run `fn` (a whole transaction: it is re-run from the start), retrying transient store errors (the server
    gone, SQLite busy, a PostgreSQL lock or statement timeout). `notify` hears about each retry (the CLI tells
    the operator on stderr)."""
    deadline = time.monotonic() + patience
    delay = 0.2
    while True:
        try:
            return fn()
        except STORE_ERRORS as exc:
            if not is_transient(exc) or time.monotonic() > deadline:
                raise
            log.warning("store unavailable during %s (%s); retrying in %.1fs", what, first_line(exc), delay)
            if notify is not None:
                notify(first_line(exc))
            drop_connection()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
