"""The TUI offers the dataset DAG after a build: `g` on the overview writes it; the overview shows the root."""
from __future__ import annotations

import pytest

from ptolemy_tui.services import build
from ptolemy_tui.store.models import DatasetRoot, Project
from tests.screens.test_project_tabs import run, text_of
from tests.screens.helpers import wait_for
from tests.worker.buildkit import fast_timings, reap_workers, wait_for_build

pytestmark = pytest.mark.timeout(90)


def test_g_writes_the_dataset_dag_and_the_overview_shows_its_root(packed_project, monkeypatch):
    fast_timings(monkeypatch)
    build.start_build(packed_project, workers=2)
    assert wait_for_build(packed_project.name, timeout=60)["status"] == "built"
    reap_workers()

    async def scenario(app, screen, pilot):
        await wait_for(pilot, lambda: "press g" in text_of(screen, "#overview-body"), timeout=20)
        await pilot.press("g")
        await wait_for(pilot, lambda: DatasetRoot.select().where(DatasetRoot.project == packed_project.id).exists(),
                       timeout=30)
        root = DatasetRoot.get(DatasetRoot.project == packed_project.id).root_cid
        screen.pane("overview").poll_now()
        await wait_for(pilot, lambda: root in text_of(screen, "#overview-body"), timeout=20)
        assert Project.get_by_id(packed_project.id).status == "built"

    run(packed_project, scenario, size=(120, 40))
