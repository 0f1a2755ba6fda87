"""SVG snapshots of the main screens at 80x24 and 120x40 (pytest-textual-snapshot).

Deterministic: the sample tree lives at a fixed path, the CARs and workers are fixed rows, refresh is paused
after the first load (so sparklines hold one sample), and the log (which shows clock times) is not snapshotted.
Update after an intended change with `pytest tests/screens/test_snapshots.py --snapshot-update`.
"""
from __future__ import annotations

import fcntl
import shutil
import tempfile
from pathlib import Path

import pytest

from ptolemy_tui.screens.app import PtolemyApp
from ptolemy_tui.screens.project import ProjectScreen
from ptolemy_tui.screens.projects import ProjectsTable
from tests.screens import helpers

pytestmark = pytest.mark.timeout(60)

SIZES = [(80, 24), (120, 40)]
FIXED_BASE = Path(tempfile.gettempdir()) / "ptolemy-snapshot"


@pytest.fixture
def building_project(sqlite_store):
    # The tree sits at a fixed path (the overview shows it); a lock keeps concurrent test runs apart.
    with open(str(FIXED_BASE) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(FIXED_BASE, ignore_errors=True)
        yield helpers.showcase(FIXED_BASE, files=60, second_files=5)
        shutil.rmtree(FIXED_BASE, ignore_errors=True)


async def _settle(pilot, predicate):
    await helpers.wait_for(pilot, predicate)
    pilot.app.paused_refresh = True
    await pilot.pause(0.3)  # DataTable settles its column widths after the rows land
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_projects_screen(snap_compare, building_project, size):
    async def run_before(pilot):
        await _settle(pilot, lambda: pilot.app.screen.query_one(ProjectsTable).row_count == 2)

    assert snap_compare(PtolemyApp(watch_tty=False), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("tab", ["overview", "tree", "containers", "build", "cars"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_project_tab(snap_compare, building_project, size, tab):
    async def run_before(pilot):
        def ready():
            screen = pilot.app.screen
            if not isinstance(screen, ProjectScreen):
                return False
            pane = screen.pane(tab)
            if tab == "tree":
                return pane.loads >= 1 and pane.polls >= 1
            if tab == "containers":
                return pane.query_one("#containers-table").row_count > 0
            if tab == "build":
                return pane.query_one("#workers-table").row_count == 2
            if tab == "cars":
                return pane.query_one("#cars-table").row_count == 2
            return pane.polls >= 1

        await _settle(pilot, ready)
        if tab == "build":  # the sparklines hold exactly one sample, however many polls ran
            pane = pilot.app.screen.pane("build")
            pane.rates.clear()
            pane.staging_used.clear()
            pane.show(pane.last)
            await pilot.pause()

    app = PtolemyApp(project="demo", tab=tab, watch_tty=False)
    assert snap_compare(app, terminal_size=size, run_before=run_before)
