"""Bulk inserts of millions of rows (scan's files, containerize's items): the fastest path each store has.

PostgreSQL takes rows through COPY (one round trip per batch, no statement parsing per row: several times
faster than multi-row INSERTs over a socket); SQLite through executemany of a multi-row INSERT. On PostgreSQL
the client and the server also work at the same time rather than in turns: RowStream keeps one COPY open in the
caller's transaction (containerize's items), BackgroundCopy loads committed batches on a connection of its own
(scan's files).
"""
from __future__ import annotations

import contextlib
import io
import queue
import threading
from functools import lru_cache
from typing import Callable, Iterable, Iterator, Sequence

import peewee

SQLITE_MAX_PARAMS = 999
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _bytea(value) -> str:
    return "\\\\x" + bytes(value).hex()  # bytea hex input; the backslash itself escaped for COPY


def _text(value) -> str:
    return str(value).translate(_COPY_ESCAPES)


# Each column's COPY text as an f-string expression of the value named {v}, by the model field's type; other
# types (text, dates) go through str() and COPY's escapes. (Before Python 3.12 an f-string's expressions cannot
# hold a backslash, hence the names _NULL and _BYTEA.)
_EXPRESSIONS = {"BLOB": "_BYTEA + {v}.hex()", "FLOAT": "repr({v})", "DOUBLE": "repr({v})", "BOOL": "'t' if {v} else 'f'",
                **{kind: "{v}" for kind in ("INT", "BIGINT", "SMALLINT", "AUTO", "BIGAUTO")}}
_SCOPE = {"_text": _text, "_NULL": "\\N", "_BYTEA": "\\\\x"}


@lru_cache(maxsize=64)
def row_formatter(model: type[peewee.Model], columns: tuple[str, ...]) -> Callable[[Iterable[Sequence]], str]:
    """A function from rows (tuples in `columns` order) to their COPY text, compiled once per table and column
    list. A 1M-file scan formats 11M values: one f-string a row is ~3.5x faster than a formatter looked up per
    value, and this formatting was most of what a PostgreSQL bulk load cost the client."""
    names = [f"v{i}" for i in range(len(columns))]
    parts = []
    for name, column in zip(names, columns):
        field = model._meta.columns[column]
        expression = _EXPRESSIONS.get(field.field_type, "_text({v})").format(v=name)
        parts.append("{" + (f"_NULL if {name} is None else {expression}" if field.null else expression) + "}")
    row = "\t".join(parts)
    source = f"def format_rows(rows):\n    return ''.join([f\"{row}\\n\" for {', '.join(names)}, in rows])\n"
    scope = dict(_SCOPE)
    exec(compile(source, f"<COPY format of {model._meta.table_name}>", "exec"), scope)  # our own code, not input
    return scope["format_rows"]


def copy_sql(model: type[peewee.Model], columns: Sequence[str]) -> str:
    """COPY FROM STDIN of these columns of the model's table (names from the models, never from input)."""
    cols = ", ".join(f'"{c}"' for c in columns)
    return f'COPY "{model._meta.table_name}" ({cols}) FROM STDIN'


def copy_text(model: type[peewee.Model], columns: Sequence[str], rows: Iterable[Sequence]) -> io.StringIO:
    """The rows in COPY's text format."""
    return io.StringIO(row_formatter(model, tuple(columns))(rows))


def insert_rows(db: peewee.Database, model: type[peewee.Model], columns: Sequence[str],
                rows: Sequence[Sequence]) -> None:
    """Insert `rows` (tuples in the order of the column names `columns`) into `model`'s table, inside the
    caller's transaction. The driver's errors come as peewee's, as from any query (the worker's retries know
    peewee's OperationalError, not psycopg2's or sqlite3's)."""
    if not rows:
        return
    with peewee.__exception_wrapper__:
        cursor = db.cursor()
        if isinstance(db, peewee.PostgresqlDatabase):
            cursor.copy_expert(copy_sql(model, columns), copy_text(model, columns, rows))
            return
        # SQLite: many rows a statement (a statement and its binding cost more than a row does), within the
        # 999 bound parameters the oldest SQLite builds allow; the remainder one row a statement.
        cols = ", ".join(f'"{c}"' for c in columns)
        one = f'({", ".join("?" * len(columns))})'
        per = max(1, SQLITE_MAX_PARAMS // len(columns))
        head = f'INSERT INTO "{model._meta.table_name}" ({cols}) VALUES '
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


_END, _ABORT = "", object()


class _CopyFeed:
    """What COPY reads from: chunks of COPY text handed over by the thread that makes them. A bounded queue,
    so a slow server holds the producer back instead of the chunks piling up in memory."""

    def __init__(self):
        self.chunks: queue.Queue = queue.Queue(maxsize=4)

    def read(self, _size: int = -1) -> str:
        chunk = self.chunks.get()
        if chunk is _ABORT:
            raise _CopyAborted("the rows' producer stopped")  # psycopg2 then ends the COPY with an error
        return chunk


class _CopyAborted(Exception):
    pass


class RowStream:
    """Rows into one table as they are produced, inside the caller's transaction, in batches of any size.

    On PostgreSQL one COPY stays open from the first batch to close(), fed from this thread to a second one
    that sends it: the server stores the last batch while the caller computes the next, instead of the two
    taking turns (containerize of 1M files: the client and the server each spent ~6 s, one core idle). While
    the stream is open the caller must not use its connection (read through `side_reader`). On SQLite,
    insert_rows a batch (the same process does the work either way)."""

    def __init__(self, db: peewee.Database, model: type[peewee.Model], columns: Sequence[str]):
        self.db, self.model, self.columns = db, model, tuple(columns)
        self.pg = isinstance(db, peewee.PostgresqlDatabase)
        self.feed: _CopyFeed | None = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def add(self, rows: Sequence[Sequence]) -> None:
        if not rows:
            return
        if not self.pg:
            insert_rows(self.db, self.model, self.columns, rows)
            return
        if self.thread is None:
            self._open()
        self._put(row_formatter(self.model, self.columns)(rows))

    def _open(self) -> None:
        sql = copy_sql(self.model, self.columns)
        cursor = self.db.cursor()  # taken here: peewee's connections are per thread
        self.feed = _CopyFeed()

        def send() -> None:
            try:
                cursor.copy_expert(sql, self.feed, size=1 << 20)
            except BaseException as exc:  # handed to the caller's thread at its next add() or close()
                self.error = exc

        self.thread = threading.Thread(target=send, name="copy-rows", daemon=True)
        self.thread.start()

    def _put(self, chunk) -> None:
        while True:
            if self.error is not None:
                self._raise()
            try:
                self.feed.chunks.put(chunk, timeout=0.5)
                return
            except queue.Full:
                if not self.thread.is_alive():
                    self._raise()

    def _raise(self) -> None:
        error, self.error = self.error, None
        self.thread.join()
        self.thread = None
        with peewee.__exception_wrapper__:
            raise error or RuntimeError("the COPY thread ended without a word")

    def close(self) -> None:
        """End the COPY and wait until the server has stored every row; raises what the COPY raised."""
        if self.thread is None:
            return
        self._put(_END)
        self.thread.join()
        if self.error is not None:
            self._raise()
        self.thread = None

    def abort(self) -> None:
        """Stop a COPY the caller will not finish (its transaction is about to roll back): the connection is
        the caller's again when this returns."""
        if self.thread is None:
            return
        with contextlib.suppress(BaseException):
            self._put(_ABORT)
        if self.thread is not None:
            self.thread.join()
        self.thread, self.error = None, None


@contextlib.contextmanager
def side_reader(db: peewee.Database) -> Iterator[Callable[[str, Sequence], list[tuple]]]:
    """A function (sql, params) -> rows reading committed data while a RowStream keeps the caller's own
    connection busy: a second connection on PostgreSQL, the same one on SQLite (which has no stream)."""
    if not isinstance(db, peewee.PostgresqlDatabase):
        yield lambda sql, params: db.execute_sql(sql, params).fetchall()
        return
    side = peewee.PostgresqlDatabase(db.database, **db.connect_params)
    try:
        yield lambda sql, params: side.execute_sql(sql, params).fetchall()
    finally:
        side.close()


class BackgroundCopy:
    """PostgreSQL: batches of COPY text loaded into one table by a thread with a connection of its own, one
    committed COPY a batch, while the caller goes on (scan: the server stores one batch of files while the
    walk's next batch is formatted). For rows that commit batch by batch anyway and that nothing else in the
    caller's transaction refers to. drain() waits until every batch sent is stored and raises the first error."""

    def __init__(self, db: peewee.PostgresqlDatabase, model: type[peewee.Model], columns: Sequence[str]):
        self.sql = copy_sql(model, columns)
        self.side = peewee.PostgresqlDatabase(db.database, **db.connect_params)
        self.batches: queue.Queue = queue.Queue(maxsize=2)  # bounds memory: two batches waiting at most
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._load, name="copy-batches", daemon=True)
        self.thread.start()

    def _load(self) -> None:
        while True:
            text = self.batches.get()
            try:
                if text is None:
                    self.side.close()  # peewee's connections are per thread: this thread's, closed by it
                    return
                if self.error is None:  # after an error, batches are taken and dropped so that put() never blocks
                    with self.side.atomic():
                        self.side.cursor().copy_expert(self.sql, io.StringIO(text), size=1 << 20)
            except BaseException as exc:
                self.error = exc
            finally:
                self.batches.task_done()

    def submit(self, text: str) -> None:
        self._raise()
        if text:
            self.batches.put(text)

    def drain(self) -> None:
        self.batches.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            with peewee.__exception_wrapper__:
                raise self.error

    def close(self) -> None:
        """Stop the thread (after the batches already sent) and close its connection; raises nothing."""
        if self.thread.is_alive():
            self.batches.put(None)
            self.thread.join()
