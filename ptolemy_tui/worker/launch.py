"""Starting worker subprocesses (and the TUI's scan, containerize, verify and dag jobs) that outlive whoever
started them (the TUI, an SSH session, `ptolemy build`).

Each is `python -m ptolemy_tui worker --project NAME` in its own session (no controlling terminal, so a hangup
does not reach it), stdin from /dev/null, stdout/stderr appended to a log file in the XDG state dir. The store
URL travels in the environment (PTOLEMY_DB), not on the command line, where `ps` would show its password.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import urllib.parse

import peewee

from ptolemy_tui import paths
from ptolemy_tui.store.models import database

_CHILDREN: list[subprocess.Popen] = []  # reaped by reap() so a long-lived TUI does not collect zombies
_CHILDREN_LOCK = threading.Lock()  # the TUI spawns from worker threads and reaps from its poll thread


def store_url(db: peewee.Database | None = None) -> str:
    """The URL of the open store, for a child process to open the same one."""
    db = db if db is not None else database.obj
    if isinstance(db, peewee.SqliteDatabase):
        return f"sqlite:///{os.path.abspath(db.database)}"
    if isinstance(db, peewee.PostgresqlDatabase):
        params = db.connect_params
        user = urllib.parse.quote(params.get("user") or "", safe="")
        password = params.get("password")
        auth = f"{user}:{urllib.parse.quote(password, safe='')}@" if password else (f"{user}@" if user else "")
        host = params.get("host") or "localhost"
        port = params.get("port") or 5432
        return f"postgresql://{auth}{host}:{port}/{urllib.parse.quote(db.database, safe='')}"
    raise RuntimeError(f"cannot hand a {type(db).__name__} store to a worker process")


def log_dir() -> str:
    path = os.path.join(paths.state_dir(), "workers")
    os.makedirs(path, exist_ok=True)
    return path


WORKER_ID_ENV = "PTOLEMY_WORKER_ID"  # the Worker row registered for the child before it started


def _detached(argv: list[str], log_path: str, extra_env: dict[str, str], *,
              stdout_path: str | None = None) -> subprocess.Popen:
    """`stdout_path`: the command's output apart from its log (a JSON report to read back)."""
    env = dict(os.environ)
    env["PTOLEMY_DB"] = store_url()
    env.update(extra_env)
    with open(log_path, "ab") as log_file, open(stdout_path or os.devnull, "wb") as out_file:
        proc = subprocess.Popen([sys.executable, "-m", "ptolemy_tui", *argv], stdin=subprocess.DEVNULL,
                                stdout=out_file if stdout_path else log_file, stderr=log_file if stdout_path
                                else subprocess.STDOUT, env=env, start_new_session=True, close_fds=True, cwd="/")
    with _CHILDREN_LOCK:
        _CHILDREN.append(proc)
    return proc


def spawn_worker(project_name: str, worker_id: int) -> subprocess.Popen:
    """One detached worker for a pre-registered Worker row (the supervisor's way)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = os.path.join(log_dir(), f"{project_name}-{stamp}-w{worker_id}.log")
    return _detached(["worker", "--project", project_name], log_path, {WORKER_ID_ENV: str(worker_id)})


SUPERVISOR_TOKEN_ENV = "PTOLEMY_SUPERVISOR_TOKEN"
SUPERVISOR_WORKERS_ENV = "PTOLEMY_SUPERVISOR_WORKERS"  # the pre-registered Worker rows it starts first


def spawn_supervisor(project_name: str, token: str, worker_ids: list[int]) -> subprocess.Popen:
    """The detached supervisor of a build (worker/supervisor.py); it starts the workers."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = os.path.join(log_dir(), f"{project_name}-{stamp}-supervisor.log")
    return _detached(["supervise", project_name], log_path,
                     {SUPERVISOR_TOKEN_ENV: token, SUPERVISOR_WORKERS_ENV: ",".join(map(str, worker_ids))})


def spawn_workers(project_name: str, worker_ids: list[int]) -> list[int]:
    """Start one detached worker per pre-registered Worker row; returns their pids."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return [_detached(["worker", "--project", project_name],
                      os.path.join(log_dir(), f"{project_name}-{stamp}-{n + 1}.log"),
                      {WORKER_ID_ENV: str(worker_id)}).pid
            for n, worker_id in enumerate(worker_ids)]


JOB_NICENESS = 10


def spawn_job(project_name: str, kind: str, argv: list[str], *,
              report: bool = False) -> tuple[subprocess.Popen, str, str | None]:
    """A detached `ptolemy scan|containerize|verify|dag …` (services/jobs); returns it, its log's path and, with
    `report`, the path its standard output (a --json report) goes to."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = os.path.join(log_dir(), f"{project_name}-{stamp}-{kind}.log")
    report_path = log_path[:-len(".log")] + ".json" if report else None
    proc = _detached(argv, log_path, {}, stdout_path=report_path)
    # Below the TUI that started it: on two cores a scan's walker and writer would otherwise take the CPU
    # from under the operator's keys (measured: 405 ms stalls, 199 ms with this). Long before the job forks
    # its walker, which inherits it.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, proc.pid, JOB_NICENESS)
    return proc, log_path, report_path


def reap() -> list[tuple[int, int]]:
    """Collect exited children of this process: [(pid, returncode)]."""
    with _CHILDREN_LOCK:
        done = [(p.pid, p.returncode) for p in _CHILDREN if p.poll() is not None]
        _CHILDREN[:] = [p for p in _CHILDREN if p.returncode is None]
    return done


def children() -> list[subprocess.Popen]:
    with _CHILDREN_LOCK:
        return list(_CHILDREN)
