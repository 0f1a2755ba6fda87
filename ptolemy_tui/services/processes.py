"""What the CLI needs from the worker package, so that the CLI reaches the worker only through services: the
`ptolemy worker` and `ptolemy supervise` entry points, where worker logs go, this process's worker children, and
the workers' patience with a store that is down (used by operator commands too).

Nothing is imported at module level: `ptolemy worker` must pick its PostgreSQL driver before peewee is imported.
"""
from __future__ import annotations

from typing import Any, Callable


def skip_postgres_driver(url: str | None, ini_path: str | None) -> None:
    from ptolemy_tui.worker.driver import skip_postgres_driver as skip

    skip(url, ini_path)


def run_worker(*, project: str | None, staging: str | None, source_root: str | None) -> int:
    from ptolemy_tui.worker.main import WorkerOptions, run_worker as run

    return run(WorkerOptions(project=project, staging=staging, source_root=source_root))


def supervisor_handoff() -> tuple[str, list[int]]:
    """The token and worker ids `ptolemy build` handed to `ptolemy supervise` in its environment (taken out)."""
    import os

    from ptolemy_tui.worker import launch

    token = os.environ.pop(launch.SUPERVISOR_TOKEN_ENV, "")
    ids = [int(x) for x in os.environ.pop(launch.SUPERVISOR_WORKERS_ENV, "").split(",") if x.isdigit()]
    return token, ids


def run_supervisor(name: str, token: str, ids: list[int]) -> int:
    from ptolemy_tui.worker.supervisor import run_supervisor as run

    return run(name, token, ids)


def log_dir() -> str:
    from ptolemy_tui.worker import launch

    return launch.log_dir()


def children() -> list[Any]:
    """Worker processes this process started and has not reaped yet."""
    from ptolemy_tui.worker import launch

    return launch.children()


def patience() -> float:
    from ptolemy_tui.worker import dbretry

    return dbretry.DEFAULT_PATIENCE


def store_errors() -> tuple[type[BaseException], ...]:
    from ptolemy_tui.worker import dbretry

    return dbretry.STORE_ERRORS


def is_transient(exc: BaseException) -> bool:
    from ptolemy_tui.worker import dbretry

    return dbretry.is_transient(exc)


def retrying(fn: Callable[[], Any], what: str, notify: Any = None) -> Any:
    from ptolemy_tui.worker import dbretry

    return dbretry.retrying(fn, what, notify=notify)


def first_line(exc: BaseException) -> str:
    from ptolemy_tui.worker import dbretry

    return dbretry.first_line(exc)
