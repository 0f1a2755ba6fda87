"""A packing's container items into the store, inside the caller's transaction, by the fastest path each store has.

PostgreSQL: every item a row, all of them through one COPY kept open (bulk.RowStream), so that the server stores
one batch while the next is packed.

SQLite: an item that is a whole file (core.packing.whole_file_ids: its path, from offset 0, its size, no shard)
goes in by its file id alone. One INSERT … SELECT a batch joins a JSON array of the ids (json_each, built into
SQLite since 3.38) with the file rows, so the rest of the row is never built, bound and parsed again in Python:
1M items cost 0.57-0.63 CPU-s this way against 1.17-1.29 as rows of seven values. The other items (shards,
symlinks) go as rows. Without JSON in the SQLite library, every item is a row.
"""
from __future__ import annotations

import json
from typing import Iterable, Sequence

import peewee

from ptolemy_tui.core.packing import whole_file_ids
from ptolemy_tui.store import bulk
from ptolemy_tui.store.models import ContainerItem, File

COLUMNS = ("container_id", "file_id", "seq", "offset", "length", "shard_index", "car_path")
_TABLE, _FILES = ContainerItem._meta.table_name, File._meta.table_name
_COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)
# Table and column names from the models, never from input; the ids are one bound parameter.
_WHOLE_FILES_SQL = (
    f'INSERT INTO "{_TABLE}" ({_COLUMN_LIST}) '
    f'SELECT ?, f."id", ? + j."key", 0, f."size", NULL, f."path" '
    f'FROM json_each(?) AS j JOIN "{_FILES}" AS f ON f."id" = j."value"')


def _rows_of(container_id: int, numbered: Iterable[tuple[int, Sequence]]) -> list[tuple]:
    """The items' rows in COLUMNS order, from (seq, piece in core.packing.Piece's fields) pairs."""
    return [(container_id, p[0], n, p[2], p[3], p[4], p[1]) for n, p in numbered]


def _has_json(db: peewee.Database) -> bool:
    try:
        db.execute_sql("SELECT json_valid('[]')")
        return True
    except peewee.OperationalError:  # an SQLite built without JSON
        return False


class ItemStream:
    """Items into container_item as the packer places them, a batch of one container's consecutive items at a
    time. While it is open the caller must not use its connection on PostgreSQL (read through bulk.side_reader).
    close() stores every item added so far (it may be opened again by the next add)."""

    def __init__(self, db: peewee.Database):
        self.db = db
        self.rows = bulk.RowStream(db, ContainerItem, COLUMNS)
        self.by_id = not isinstance(db, peewee.PostgresqlDatabase) and _has_json(db)

    def add(self, container_id: int, first_seq: int, pieces: Sequence) -> None:
        if not pieces:
            return
        if not self.by_id:
            self.rows.add(_rows_of(container_id, enumerate(pieces, first_seq)))
            return
        ids = whole_file_ids(pieces)  # None (JSON null) joins no file: those items are stored as rows below
        with peewee.__exception_wrapper__:
            stored = self.db.cursor().execute(_WHOLE_FILES_SQL, (container_id, first_seq, json.dumps(ids))).rowcount
        whole = len(ids) - ids.count(None)
        if stored != whole:  # a file row gone: the store changed under a transaction that holds its write lock
            raise RuntimeError(f"container {container_id}: {stored} of {whole} whole-file items found their file")
        if whole < len(ids):
            # rows for those items alone: a batch of 20,000 whole files often holds a few shards
            rest = ((n, p) for n, (p, fid) in enumerate(zip(pieces, ids), first_seq) if fid is None)
            self.rows.add(_rows_of(container_id, rest))

    def close(self) -> None:
        self.rows.close()

    def abort(self) -> None:
        self.rows.abort()
