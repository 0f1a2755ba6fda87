"""Scan and containerize as jobs: run by a detached process of their own, one per project, cancelled through the
store (and by SIGTERM on their host), abandoned at once when their process is gone. Real processes, frozen at a
fault point where a race needs pinning down."""
from __future__ import annotations

import os
import signal
import socket
import threading

import psutil
import pytest

from ptolemy_tui.errors import UsageError
from ptolemy_tui.services import jobs
from ptolemy_tui.services.containerize import containerize
from ptolemy_tui.services.scan import run_scan
from ptolemy_tui.store import transitions
from ptolemy_tui.store.models import Container, ContainerItem, Project, Scan, now
from ptolemy_tui.worker import launch
from tests.cli.helpers import run_ptolemy
from tests.screens.helpers import make_project
from tests.worker.faultkit import arm, disarm, resume, wait_stopped


def _finish(handle: jobs.JobHandle) -> tuple[bool, str]:
    handle.proc.wait(timeout=120)
    return jobs.outcome(handle)


def _fresh(project: Project) -> Project:
    return Project.get_by_id(project.id)


def test_a_detached_scan_and_pack_run_in_their_own_process(store, tmp_path):
    project = make_project(tmp_path, files=40)
    handle = jobs.start(project, "scan")
    assert handle.proc.pid != os.getpid() and handle.kind == "scan"
    ok, line = _finish(handle)
    scan = Scan.select().where(Scan.project == project).get()
    assert ok and line == f"scan done: {scan.files:,} files" and scan.files == 42
    assert _fresh(project).status == "scanned" and _fresh(project).job_owner is None

    ok, line = _finish(jobs.start(project, "containerize"))
    containers = Container.select().where(Container.project == project).count()
    assert ok and line.startswith(f"containerized: {containers} new container(s)") and containers >= 3
    assert _fresh(project).status == "containerized"

    # a refusal comes back as the command's own one line
    ok, line = _finish(jobs.start(project, "containerize"))
    assert not ok and line.startswith("project demo is already containerized: `ptolemy containerize demo --reset`")
    ok, line = _finish(jobs.start(project, "containerize", reset=True))
    assert ok and Container.select().where(Container.project == project).count() == containers


def test_cancel_stops_a_pack_and_leaves_nothing_of_it(store, store_url, tmp_path, monkeypatch):
    """`ptolemy cancel NAME` during a pack: the job (frozen at mid-pack, inside its transaction) stops as soon as
    it runs again; no container or item of it stays, and the project can be packed again."""
    project = make_project(tmp_path, files=40)
    run_scan(project)
    faults = arm(monkeypatch, "mid-pack", tmp_path / "faults")
    handle = jobs.start(project, "containerize")
    pid = wait_stopped(faults, "mid-pack")
    assert pid == handle.proc.pid
    assert psutil.Process(pid).nice() == launch.JOB_NICENESS  # below the TUI that started it
    assert _fresh(project).status == "containerizing" and _fresh(project).job_owner == f"{socket.gethostname()}:{pid}"
    with pytest.raises(UsageError, match="is containerizing right now"):
        jobs.start(project, "scan")  # one job per project

    said = run_ptolemy("--db", store_url, "cancel", project.name)
    assert said.code == 0 and "the containerize was asked to stop" in said.out, said.err
    resume(pid)
    ok, line = _finish(handle)
    assert not ok and line == "demo: containerize cancelled: nothing was packed; run it again"
    assert _fresh(project).status == "failed" and _fresh(project).job_owner is None
    assert Container.select().count() == 0 and ContainerItem.select().count() == 0

    disarm(monkeypatch)
    ok, _line = _finish(jobs.start(project, "containerize"))
    assert ok and _fresh(project).status == "containerized"


def test_a_cancel_asked_through_the_store_reaches_a_job_on_another_host(store, tmp_path):
    """No signal crosses hosts: the job's watcher reads the request from the store."""
    project = make_project(tmp_path, files=5)
    run_scan(project)
    transitions.begin_containerize(project, jobs.owner_token())
    cancel = threading.Event()
    with jobs.watched(project, cancel):
        assert not cancel.wait(timeout=2 * jobs.CANCEL_POLL + 0.5)  # nothing asked: it carries on
        assert transitions.request_job_cancel(project) == ("containerizing", jobs.owner_token())
        assert cancel.wait(timeout=30)
    transitions.fail_containerize(project, "cancelled")


def test_a_job_whose_process_died_is_abandoned_at_once(store, tmp_path, monkeypatch):
    project = make_project(tmp_path, files=40)
    run_scan(project)
    faults = arm(monkeypatch, "mid-pack", tmp_path / "faults")
    handle = jobs.start(project, "containerize")
    pid = wait_stopped(faults, "mid-pack")
    assert not jobs.recover_dead_job(project)  # alive (if frozen): left alone
    os.kill(pid, signal.SIGKILL)
    handle.proc.wait(timeout=30)
    assert _fresh(project).status == "containerizing"  # nothing could say otherwise: the process died

    disarm(monkeypatch)
    report = containerize(project)  # the next pack sees the owner gone and starts over
    assert report["new_containers"] >= 3 and _fresh(project).status == "containerized"
    texts = [e.text for e in project.events]
    assert f"the previous containerize was interrupted (its process {socket.gethostname()}:{pid} is gone): " \
           "run it again" in texts


def test_liveness_is_the_pid_here_and_the_heartbeat_elsewhere(tmp_path):
    here = socket.gethostname()
    assert jobs.is_alive(f"{here}:{os.getpid()}", None)
    child = psutil.Popen(["true"])
    child.wait()
    assert not jobs.is_alive(f"{here}:{child.pid}", now())  # gone, whatever the heartbeat says
    assert jobs.is_alive("other-host:1", now() - 10)
    assert not jobs.is_alive("other-host:1", now() - jobs.JOB_STALE - 1)
    assert not jobs.is_alive("other-host:1", None)


def test_a_detached_job_s_log_is_its_own(store, tmp_path):
    project = make_project(tmp_path, files=3)
    handle = jobs.start(project, "scan")
    _finish(handle)
    assert os.path.dirname(handle.log_path) == launch.log_dir() and handle.log_path.endswith("-scan.log")
    with open(handle.log_path) as fh:
        assert "scanned " in fh.read()
