from __future__ import annotations

import asyncio

import pytest

from ptolemy_tui.screens.app import PtolemyApp
from ptolemy_tui.screens.projects import ProjectsTable
from tests.screens.helpers import wait_for

pytestmark = pytest.mark.timeout(60)


def test_projects_table_lists_real_projects(packed_project):
    async def scenario():
        app = PtolemyApp(watch_tty=False)
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.screen.query_one(ProjectsTable)
            await wait_for(pilot, lambda: table.row_count == 1)
            row = table.get_row("demo")
            assert str(row[1]) == "containerized"
            assert row[2] == "62"  # 60 files + README + the big one

    asyncio.run(scenario())
