"""The build service: refusals with the reason, pause/resume, cancel, retry and the progress document, with
real worker subprocesses on SQLite and PostgreSQL."""
from __future__ import annotations

import os
import time

import pytest

from ptolemy_tui.errors import UsageError
from ptolemy_tui.services import build
from ptolemy_tui.store.models import Car, Container, Project
from tests.worker.buildkit import fast_timings, make_tree, reap_workers, seed_project, wait_for_build, wait_until


def _big(root, n: int, size: int):
    root.mkdir()
    for i in range(n):
        (root / f"f{i}.bin").write_bytes(os.urandom(size))
    return root


def test_refusals_name_the_reason(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    src = make_tree(tmp_path / "src")
    project = seed_project("p", src, tmp_path / "stg")
    Project.update(status="scanned").execute()
    with pytest.raises(UsageError, match="cannot build project p: it is scanned; next: ptolemy containerize p"):
        build.start_build("p")
    Project.update(status="containerized").execute()
    with pytest.raises(UsageError, match="--mode 'fast' is unknown"):
        build.start_build("p", mode="fast")
    with pytest.raises(UsageError, match="out of range"):
        build.start_build("p", workers=0)
    Container.update(state="built").execute()
    with pytest.raises(UsageError, match="all .* containers are built"):
        build.start_build("p")
    Container.update(state="failed").execute()
    with pytest.raises(UsageError, match="ptolemy retry p"):
        build.start_build("p")
    with pytest.raises(UsageError, match="no build is running"):
        build.pause("p")
    with pytest.raises(UsageError, match="no build is running"):
        build.cancel("p")


def test_pause_finishes_the_current_container_then_waits(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    src = _big(tmp_path / "src", 6, 6 << 20)
    project = seed_project("p", src, tmp_path / "stg", per_container=6 << 20, shard_size=8 << 20)
    build.start_build(project, workers=1)
    build.pause(project)
    with pytest.raises(UsageError, match="already running"):
        build.start_build(project)
    wait_until(lambda: any(w["message"] == "paused" for w in build.build_progress("p")["workers"]), what="paused")
    built = Container.select().where(Container.state == "built").count()
    time.sleep(1.0)
    doc = build.build_progress("p")
    assert doc["paused"] and doc["containers"]["building"] == 0
    assert doc["containers"]["built"] == built < 6, "nothing is built while paused"
    build.resume(project)
    doc = wait_for_build("p")
    reap_workers()
    assert doc["status"] == "built" and Car.select().count() == 6


def test_cancel_requeues_in_flight_work_and_a_new_build_continues(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    src = _big(tmp_path / "src", 6, 12 << 20)
    staging = tmp_path / "stg"
    project = seed_project("p", src, staging, per_container=12 << 20, shard_size=16 << 20)
    build.start_build(project, workers=2)
    wait_until(lambda: Container.select().where(Container.state == "building").exists(), what="building")
    result = build.cancel(project)
    assert build.wait_for_workers(project, timeout=20) == 0
    reap_workers()
    assert result["requeued"] >= 1
    assert not Container.select().where(Container.state == "building").exists()
    assert not [n for n in os.listdir(staging / "p") if n.endswith(".part")]
    p = Project.get_by_id(project.id)
    assert p.status == "containerized" and "cancelled" in p.message
    build.start_build(project, workers=2)
    doc = wait_for_build("p")
    reap_workers()
    assert doc["status"] == "built" and Car.select().count() == 6
    assert len(os.listdir(staging / "p")) == 6


def test_progress_document(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    src = make_tree(tmp_path / "src")
    project = seed_project("p", src, tmp_path / "stg")
    doc = build.build_progress(project)
    assert doc["containers"]["pending"] == doc["containers"]["total"] > 0
    assert doc["bytes_done"] == 0 and doc["bytes_total"] == sum(c.data_bytes for c in Container.select())
    assert doc["eta_seconds"] is None and doc["staging"] is None and doc["workers"] == [] and not doc["running"]
    build.start_build(project)
    doc = wait_for_build("p")
    reap_workers()
    assert doc["bytes_done"] == doc["bytes_total"] and doc["finished"] and not doc["running"]
    assert doc["staging"]["total"] > 0 and doc["staging"]["free"] > 0


def test_idle_workers_of_a_finished_build_do_not_block_the_next(store, tmp_path, monkeypatch):
    """Right after `build --wait` says built, a worker may idle for a poll before it exits: not a running build."""
    from ptolemy_tui.store.models import Worker
    from ptolemy_tui.worker import settings

    fast_timings(monkeypatch)
    src = make_tree(tmp_path / "src")
    project = seed_project("p", src, tmp_path / "stg")
    Container.update(state="built").execute()
    first = Container.select().order_by(Container.seq).first()
    Container.update(state="pending").where(Container.id == first.id).execute()  # e.g. requeued by a rescan
    Project.update(status="built").execute()
    lingering = Worker.create(host=settings.hostname(), pid=os.getpid(), project=project.id, state="idle",
                              message="waiting for other workers to finish", heartbeat_at=time.time())
    pids = build.start_build("p")
    assert pids and Worker.get_or_none(Worker.id == lingering.id) is not None  # its row stays until it exits
    Worker.update(state="stopped").where(Worker.id == lingering.id).execute()
    doc = wait_for_build("p")
    reap_workers()
    assert doc["status"] == "built"
    # while the project is building, an idle worker (paused, or waiting for the others) is part of the build
    Project.update(status="building").execute()
    Worker.update(state="idle").where(Worker.id == lingering.id).execute()
    Container.update(state="pending").where(Container.id == first.id).execute()
    with pytest.raises(UsageError, match="already running"):
        build.start_build("p")
