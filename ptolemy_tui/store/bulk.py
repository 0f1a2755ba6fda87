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


def _copy_value(value) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\\\x" + bytes(value).hex()  # bytea hex input; the backslash itself escaped for COPY
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (int, float)):
        return repr(value)
    return str(value).translate(_COPY_ESCAPES)


def copy_text(rows: Iterable[Sequence]) -> io.StringIO:
    buf = io.StringIO()
    write = buf.write
    for row in rows:
        write("\t".join([_copy_value(v) for v in row]))
        write("\n")
    buf.seek(0)
    return buf


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
