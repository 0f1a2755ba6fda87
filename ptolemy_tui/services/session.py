"""Running a service call on the calling thread's connection to the store.

The TUI calls services from short-lived thread workers; the store it opens is pooled (store.db, pooled=True),
so each call borrows a connection that stays open for the next poll instead of connecting anew. A thread that
already holds a connection (the CLI's main thread) keeps using it.
"""
from __future__ import annotations

from typing import Any, Callable

from ptolemy_tui.store.models import database


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    db = database.obj
    if db is None:
        raise RuntimeError("the store is not open")
    if not db.is_closed():
        return fn(*args, **kwargs)
    with db.connection_context():
        return fn(*args, **kwargs)


def close() -> None:
    """Close the store (every pooled connection too)."""
    from ptolemy_tui.store import db

    db.close_database()


# Opening the store, for the CLI (which reaches the store only through services) ------------------------------

def open_store(url: str | None, ini_path: str | None, *, operator: bool = True, pooled: bool = False) -> Any:
    from ptolemy_tui.store import db

    return db.open_database(url=url, ini_path=ini_path, operator=operator, pooled=pooled)


def resolve_url(url: str | None, ini_path: str | None) -> str:
    from ptolemy_tui.store import db

    return db.resolve_url(url, ini_path)


def describe_url(url: str) -> str:
    """The URL with its password masked."""
    from ptolemy_tui.store import db

    return db.describe_url(url)


def store_unreachable() -> type[BaseException]:
    from ptolemy_tui.store.db import StoreUnreachable

    return StoreUnreachable


def is_store_outage(exc: BaseException) -> bool:
    """The store went away (a driver-level operational or interface error)."""
    import peewee

    return isinstance(exc, (peewee.OperationalError, peewee.InterfaceError))
