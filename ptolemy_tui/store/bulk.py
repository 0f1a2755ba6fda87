"""Bulk inserts of millions of rows (scan's files, containerize's items): the fastest path each store has.

PostgreSQL takes rows through COPY (one round trip per batch, no statement parsing per row: several times
faster than multi-row INSERTs over a socket); SQLite through executemany of a multi-row INSERT.
"""
from __future__ import annotations

import io
from typing import Iterable, Sequence

import peewee

SQLITE_MAX_PARAMS = 999
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _bytea(value) -> str:
    return "\\\\x" + bytes(value).hex()  # bytea hex input; the backslash itself escaped for COPY


def _text(value) -> str:
    return str(value).translate(_COPY_ESCAPES)


# One formatter per exact type: a dict lookup a value instead of a chain of isinstance (a 1M-file scan formats
# 11M values). type() is exact, so a bool is never taken for an int; other types go through str().
_FORMATS = {type(None): lambda _v: "\\N", int: int.__repr__, float: float.__repr__, bool: lambda v: "t" if v else "f",
            bytes: _bytea, bytearray: _bytea, memoryview: _bytea, str: _text}


def copy_text(rows: Iterable[Sequence]) -> io.StringIO:
    """The rows in COPY's text format."""
    formats = _FORMATS
    text = "\n".join(["\t".join([(formats.get(type(v)) or _text)(v) for v in row]) for row in rows])
    return io.StringIO(text + "\n" if text else "")


def insert_rows(db: peewee.Database, table: str, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
    """Insert `rows` (tuples in `columns` order) into `table`, inside the caller's transaction."""
    if not rows:
        return
    cols = ", ".join(f'"{c}"' for c in columns)
    cursor = db.cursor()
    if isinstance(db, peewee.PostgresqlDatabase):
        cursor.copy_expert(f'COPY "{table}" ({cols}) FROM STDIN', copy_text(rows))
        return
    # SQLite: many rows a statement (a statement and its binding cost more than a row does), within the
    # 999 bound parameters the oldest SQLite builds allow; the remainder one row a statement.
    one = f'({", ".join("?" * len(columns))})'
    per = max(1, SQLITE_MAX_PARAMS // len(columns))
    head = f'INSERT INTO "{table}" ({cols}) VALUES '
    full = len(rows) - len(rows) % per
    if full:
        width = per * len(columns)
        flat = [value for row in rows[:full] for value in row]
        cursor.executemany(head + ", ".join([one] * per), [flat[i:i + width] for i in range(0, len(flat), width)])
    if full < len(rows):
        cursor.executemany(head + one, rows[full:])


def refresh_statistics(db: peewee.Database, *tables: str) -> None:
    """PostgreSQL: ANALYZE tables a bulk load just filled. Until autovacuum gets round to it the planner thinks
    them empty and reads a whole project's files for each directory (a rescan of 1M files: 62 s instead of 7 s).
    SQLite plans by its indexes alone."""
    if isinstance(db, peewee.PostgresqlDatabase):
        for table in tables:
            db.execute_sql(f'ANALYZE "{table}"')  # table names from the models, never from input

