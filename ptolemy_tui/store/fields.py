"""Column types the whole schema relies on."""
from __future__ import annotations

import peewee

from ptolemy_tui.core.display import display_text


class PathField(peewee.BlobField):
    """A file path as exact bytes: non-UTF-8 names round-trip (bytea in PostgreSQL, BLOB in SQLite)."""

    def db_value(self, value):
        if value is None:
            return None
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogateescape")
        return super().db_value(bytes(value))

    def python_value(self, value):
        if value is None:
            return None
        return bytes(value)  # psycopg2 hands back memoryview


def path_text(raw: bytes | None) -> str:
    """A stored path for display and JSON, by the one escaping rule of core.display; never an exception."""
    return display_text(raw)
