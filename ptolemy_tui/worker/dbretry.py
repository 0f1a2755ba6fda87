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
TRANSIENT = (peewee.OperationalError, peewee.InterfaceError)
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
        except TRANSIENT as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("store unavailable during %s (%s); retrying in %.1fs", what, first_line(exc), delay)
            if notify is not None:
                notify(first_line(exc))
            drop_connection()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
