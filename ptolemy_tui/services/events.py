"""The project's event log (the TUI's Log view): every service records what it did here."""
from __future__ import annotations

import logging

from ptolemy_tui.store.models import Event, Project

log = logging.getLogger("ptolemy.events")

_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def record(project: Project | int | None, text: str, level: str = "info") -> None:
    Event.create(project=project, text=text, level=level)
    log.log(_LOG_LEVELS.get(level, logging.INFO), "%s", text)


def recent(project: Project | int | None, limit: int = 500, after_id: int = 0) -> list[Event]:
    """Events newest last; `after_id` lets a following view fetch only what is new."""
    query = Event.select().where(Event.id > after_id)
    query = query.where(Event.project == project) if project is not None else query
    rows = list(query.order_by(Event.id.desc()).limit(limit))
    rows.reverse()
    return rows
