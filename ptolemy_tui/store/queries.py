"""Queries more than one service needs."""
from __future__ import annotations

from ptolemy_tui.store.models import Project, Worker, now

WORKER_STALE_AFTER = 30.0  # seconds without a heartbeat before a worker leaves the live view


def live_workers(project: Project | None = None, stale_after: float = WORKER_STALE_AFTER) -> list[Worker]:
    """Workers whose heartbeat is recent: a killed worker drops out of the live view by itself."""
    query = Worker.select().where((Worker.state != "stopped") & (Worker.heartbeat_at > now() - stale_after))
    if project is not None:
        query = query.where(Worker.project == project)
    return list(query.order_by(Worker.host, Worker.pid))
