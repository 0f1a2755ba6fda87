"""Queries more than one service needs."""
from __future__ import annotations

import peewee

from ptolemy_tui.core.states import WorkerState
from ptolemy_tui.store.models import Container, Project, Worker, now

WORKER_STALE_AFTER = 30.0  # seconds without a heartbeat before a worker leaves the live view


def live_workers(project: Project | None = None, stale_after: float = WORKER_STALE_AFTER) -> list[Worker]:
    """Workers whose heartbeat is recent: a killed worker drops out of the live view by itself."""
    query = Worker.select().where((Worker.state != WorkerState.STOPPED) & (Worker.heartbeat_at > now() - stale_after))
    if project is not None:
        query = query.where(Worker.project == project)
    return list(query.order_by(Worker.host, Worker.pid))


def containers_by_state(project: Project | int) -> dict[str, int]:
    """How many of the project's containers are in each state (states with none are absent)."""
    rows = Container.select(Container.state, peewee.fn.COUNT(Container.id)).where(
        Container.project == project).group_by(Container.state).tuples()
    return {state: int(n) for state, n in rows}


def bytes_contain(field: peewee.Field, needle: bytes) -> peewee.Expression:
    """`field` (raw path bytes) contains `needle`, case-sensitively, on SQLite (instr of blobs) and PostgreSQL
    (position in bytea); LIKE would need escaping and PostgreSQL's ILIKE has no bytea form."""
    from ptolemy_tui.store.models import database

    if isinstance(database.obj, peewee.PostgresqlDatabase):
        return peewee.NodeList((peewee.SQL("position("), peewee.Value(needle), peewee.SQL("in"), field,
                                peewee.SQL(")")), glue=" ") > 0
    return peewee.fn.instr(field, needle) > 0
