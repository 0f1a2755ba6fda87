"""`containerize --reset --discard-built` while a build runs is refused: it used to end the build silently."""
from __future__ import annotations

import pytest

from ptolemy_tui.errors import UsageError
from ptolemy_tui.services import build, containerize, scan
from ptolemy_tui.store.models import Car, Container, ContainerItem, Project
from tests.services.pipeline_helpers import new_project, write
from tests.worker.buildkit import fast_timings, reap_workers, wait_for_build
from tests.worker.faultkit import arm, resume, wait_stopped


def test_reset_discard_built_during_a_build_is_refused(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    monkeypatch.setenv("PTOLEMY_LEASE_SECONDS", "60")
    src = tmp_path / "src"
    src.mkdir()
    write(src / "a.bin", 3 << 20)
    project = new_project(tmp_path)
    scan.run_scan(project)
    containerize.containerize(Project.get_by_id(project.id))
    before = [(c.id, c.state) for c in Container.select().order_by(Container.id)]
    items = ContainerItem.select().count()
    faults_dir = arm(monkeypatch, "mid-write", tmp_path / "faults")
    build.start_build(Project.get_by_id(project.id), workers=1)
    pid = wait_stopped(faults_dir, "mid-write")
    try:
        with pytest.raises(UsageError, match="is running: `ptolemy cancel p` first"):
            containerize.containerize(Project.get_by_id(project.id), reset=True, discard_built=True)
        assert ContainerItem.select().count() == items
        assert Project.get_by_id(project.id).status == "building"
    finally:
        resume(pid)
    doc = wait_for_build("p")
    reap_workers()
    assert doc["status"] == "built"
    assert [c.id for c in Container.select().order_by(Container.id)] == [c for c, _ in before]
    assert Car.select().count() == len(before)
