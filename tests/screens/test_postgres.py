"""The TUI on both stores: the same screens read a real PostgreSQL server as they read SQLite."""
from __future__ import annotations

import asyncio

import pytest

from ptolemy_tui.screens.app import PtolemyApp
from ptolemy_tui.screens.project import ProjectScreen
from ptolemy_tui.screens.projects import ProjectsTable
from ptolemy_tui.store.models import Container
from tests.screens import helpers
from tests.screens.helpers import wait_for

pytestmark = pytest.mark.timeout(90)


def test_projects_and_tabs_on_each_store(store, tmp_path):
    project = helpers.make_project(tmp_path, files=30)
    helpers.scan(project)
    helpers.containerize(project)
    n = Container.select().where(Container.project == project.id).count()

    async def main():
        app = PtolemyApp(watch_tty=False)
        async with app.run_test(size=(100, 30)) as pilot:
            table = app.screen.query_one(ProjectsTable)
            await wait_for(pilot, lambda: table.row_count == 1)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen))
            screen = app.screen
            await pilot.press("2")
            await wait_for(pilot, lambda: screen.pane("tree").loads >= 1)
            await pilot.press("3")
            containers = screen.pane("containers").query_one("#containers-table")
            await wait_for(pilot, lambda: containers.row_count == n)
            await pilot.press("6")
            await wait_for(pilot, lambda: screen.pane("log").lines >= 3)

    asyncio.run(main())
