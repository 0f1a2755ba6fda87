"""The projects screen, the project form, delete confirmation, filter, help, command palette and quitting, on a
real SQLite store."""
from __future__ import annotations

import asyncio
import time

import pytest
from textual.widgets import Input, Static

from ptolemy_tui.screens.app import PtolemyApp
from ptolemy_tui.screens.base import ConfirmScreen, HelpScreen, QuitScreen
from ptolemy_tui.screens.form import ProjectForm
from ptolemy_tui.screens.project import ProjectScreen
from ptolemy_tui.screens.projects import ProjectsScreen, ProjectsTable
from ptolemy_tui.store.models import Project, Worker
from tests.screens.helpers import make_project, wait_for
from tests.states import force_status

pytestmark = pytest.mark.timeout(60)


def run(scenario, size=(80, 24)):
    async def main():
        app = PtolemyApp(watch_tty=False)
        async with app.run_test(size=size) as pilot:
            await scenario(app, pilot)
        return app

    return asyncio.run(main())


async def loaded(app, pilot, rows: int):
    table = app.screen.query_one(ProjectsTable)
    await wait_for(pilot, lambda: table.row_count == rows and table.loaded)
    return table


def test_projects_table_lists_real_projects(packed_project, tmp_path):
    make_project(tmp_path / "other", name="archive-2019", files=5)

    async def scenario(app, pilot):
        table = await loaded(app, pilot, 2)
        row = table.get_row("demo")
        assert str(row[1]) == "containerized"
        assert row[2] == "62"  # 60 small files, the README and the big one
        assert "0/" in str(row[5])
        assert str(table.get_row("archive-2019")[1]) == "defined"

    run(scenario)


def test_empty_store_says_how_to_start(sqlite_store):
    async def scenario(app, pilot):
        await wait_for(pilot, lambda: app.screen.query_one(ProjectsTable).loaded)
        empty = app.screen.query_one("#empty", Static)
        assert empty.display
        assert "ptolemy demo" in str(empty.render())

    run(scenario)


def test_new_project_form_validates_inline_and_creates(sqlite_store, tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.txt").write_text("hello")

    async def scenario(app, pilot):
        await loaded(app, pilot, 0)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectForm))
        form = app.screen
        await pilot.press(*"fresh")
        form.query_one("#target_dir", Input).value = str(tmp_path / "tree")
        form.query_one("#staging_dir", Input).value = str(tmp_path / "staging")
        form.query_one("#car_size", Input).value = "12XB"
        error = form.query_one("#err-car_size", Static)
        await wait_for(pilot, lambda: error.display and "unknown unit" in str(error.render()))
        assert not form.query_one("#err-name", Static).display
        # piece info follows the CAR size; the staging disk's free space is shown
        form.query_one("#car_size", Input).value = "31GiB"
        piece = form.query_one("#piece-info", Static)
        await wait_for(pilot, lambda: "32GiB piece" in str(piece.render()) and not error.display)
        assert "free of" in str(form.query_one("#staging-info", Static).render())
        assert form.query_one("#profile").value == "kubo"  # the default, chosen here at create time
        form.query_one("#profile").value = "go-car"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen))
        table = await loaded(app, pilot, 1)
        assert table.get_row("fresh")
        fresh = Project.get(Project.name == "fresh")
        assert (fresh.car_size, fresh.profile) == (31 << 30, "go-car")

    run(scenario)


def test_form_refuses_a_duplicate_name_inline(project, tmp_path):
    async def scenario(app, pilot):
        await loaded(app, pilot, 1)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectForm))
        form = app.screen
        form.query_one("#name", Input).value = "demo"
        form.query_one("#target_dir", Input).value = project.target_dir
        form.query_one("#staging_dir", Input).value = str(tmp_path / "s2")
        await pilot.press("ctrl+s")
        error = form.query_one("#err-name", Static)
        await wait_for(pilot, lambda: error.display and "already exists" in str(error.render()))
        assert isinstance(app.screen, ProjectForm)
        await pilot.press("escape")
        assert isinstance(app.screen, ProjectsScreen)

    run(scenario)


def test_edit_project(project):
    async def scenario(app, pilot):
        await loaded(app, pilot, 1)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectForm) and app.screen.loaded)
        form = app.screen
        assert form.query_one("#name", Input).disabled
        assert form.query_one("#car_size", Input).value == "4000KiB"
        assert form.query_one("#profile").value == "kubo"
        form.query_one("#workers", Input).value = "7"
        form.query_one("#load_type").value = "serial"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen))
        fresh = Project.get_by_id(project.id)
        assert (fresh.workers, fresh.load_type) == (7, "serial")

    run(scenario)


def test_delete_asks_first(project):
    async def scenario(app, pilot):
        table = await loaded(app, pilot, 1)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen))
        assert Project.select().count() == 1
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: table.row_count == 0)
        assert Project.select().count() == 0

    run(scenario)


def test_filter_and_open_and_back(project, tmp_path):
    make_project(tmp_path / "other", name="archive-2019", files=5)

    async def scenario(app, pilot):
        table = await loaded(app, pilot, 2)
        await pilot.press("slash", *"arch")
        await wait_for(pilot, lambda: table.row_count == 1)
        assert table.selected_key() == "archive-2019"
        await pilot.press("escape")
        await wait_for(pilot, lambda: table.row_count == 2)
        assert not app.screen.query_one("#filter").display
        table.focus()
        table.move_cursor(row=table.get_row_index("demo"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen))
        assert app.screen.project_name == "demo"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen))

    run(scenario)


def test_help_lists_the_screen_bindings_and_palette_has_every_action(project):
    async def scenario(app, pilot):
        await loaded(app, pilot, 1)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        body = str(app.screen.query_one("#help-body", Static).render())
        for word in ("New", "Edit", "Delete", "Filter", "Quit", "Help"):
            assert word in body
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen))
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("New project", "Edit the project", "Delete the project", "Filter the table",
                      "Open project demo", "Quit"):
            assert title in titles
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette")
        await pilot.press("escape")

    run(scenario)


def test_quit_without_builds_exits(project):
    async def scenario(app, pilot):
        await loaded(app, pilot, 1)
        assert app.return_code is None
        await pilot.press("q")
        # App.exit() sets the return code; nothing else does, so a quit key that does nothing times out here.
        await wait_for(pilot, lambda: app.return_code == 0, timeout=5)

    run(scenario)


def _building_elsewhere(project) -> None:
    """The project is building, with a live worker on another host."""
    force_status(project, "building")
    Worker.create(host="elsewhere", pid=99, project=project, state="building", heartbeat_at=time.time() + 600)


def test_quit_with_running_builds_asks_and_leaves_them(packed_project):
    _building_elsewhere(packed_project)

    async def scenario(app, pilot):
        await loaded(app, pilot, 1)
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        assert "demo (1 worker)" in str(app.screen.query_one(".question", Static).render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen))
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("l")
        await wait_for(pilot, lambda: app.return_code is not None)

    app = run(scenario)
    assert app.quit_choice == "leave"
    assert Project.get_by_id(packed_project.id).status == "building"


def test_quit_can_stop_running_builds(packed_project):
    _building_elsewhere(packed_project)

    async def scenario(app, pilot):
        await loaded(app, pilot, 1)
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("s")
        await wait_for(pilot, lambda: app.return_code is not None)

    app = run(scenario)
    assert app.quit_choice == "stop"
    assert Project.get_by_id(packed_project.id).status == "containerized"  # the build service's cancel ran


def test_too_small_terminal_says_so_and_recovers(project):
    from ptolemy_tui.screens.base import TooSmallScreen

    async def scenario(app, pilot):
        await loaded(app, pilot, 1)
        await pilot.resize_terminal(40, 10)
        await wait_for(pilot, lambda: isinstance(app.screen, TooSmallScreen))
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen))

    run(scenario)


def test_directory_picker_fills_the_field(sqlite_store, tmp_path):
    from ptolemy_tui.screens.form import DirectoryPicker

    (tmp_path / "pick" / "inner").mkdir(parents=True)

    async def scenario(app, pilot):
        await loaded(app, pilot, 0)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectForm))
        form = app.screen
        form.query_one("#target_dir", Input).value = str(tmp_path / "pick")
        form.query_one("#target_dir", Input).focus()
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, DirectoryPicker))
        tree = app.screen.query_one("#dirs")
        await wait_for(pilot, lambda: any(c.data and c.data.path.name == "inner" for c in tree.root.children))
        node = next(c for c in tree.root.children if c.data.path.name == "inner")
        tree.move_cursor(node)
        await pilot.press("u")
        await wait_for(pilot, lambda: app.screen is form)
        assert form.query_one("#target_dir", Input).value == str(tmp_path / "pick" / "inner")
        await pilot.press("escape")

    run(scenario)


def test_exits_when_the_terminal_goes_away(project, monkeypatch):
    """A dropped SSH session: stdin stops being a terminal, the app leaves builds alone and exits."""

    async def scenario(app, pilot):
        await loaded(app, pilot, 1)
        assert app.no_color  # NO_COLOR is honoured (the test environment sets it)
        monkeypatch.setattr("ptolemy_tui.screens.app.os.isatty", lambda fd: False)
        app._check_tty()
        await wait_for(pilot, lambda: app.return_code is not None)

    app = run(scenario)
    assert app.return_code == 0


def test_columns_widen_when_a_cell_grows(project):
    from tests.screens import helpers

    async def scenario(app, pilot):
        table = await loaded(app, pilot, 1)
        assert str(table.get_row("demo")[3]) == "0 Bytes"
        helpers.scan(project)
        await wait_for(pilot, lambda: "MiB" in str(table.get_row("demo")[3]))
        value = str(table.get_row("demo")[3])
        await wait_for(pilot, lambda: table.columns["bytes"].content_width >= len(value))

    run(scenario)
