"""Issue 15's night shift, item by item, with the pilot on a real SQLite store: lost workers at once, the staging
gauge read from the disk when no live worker reports, the paused-refresh sign and the store in the header,
re-sorting that keeps open directories, elapsed and finished times, and the build notice."""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from textual.widgets import Header

from ptolemy_tui.screens import fmt
from ptolemy_tui.screens.app import notice_sequence, short_store
from ptolemy_tui.services import views
from ptolemy_tui.store.models import Container, Project, Worker
from ptolemy_tui.worker import settings
from tests.screens import helpers
from tests.screens.helpers import wait_for
from tests.screens.test_project_tabs import run, text_of

pytestmark = pytest.mark.timeout(60)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def header_text(app) -> str:
    from textual.widgets._header import HeaderTitle

    return str(app.screen.query_one(Header).query_one(HeaderTitle).render())


def test_a_killed_worker_shows_as_lost_at_once(packed_project):
    helpers.fake_build_rows(packed_project)
    # a worker of this host whose process is gone, though its heartbeat is a second old
    Worker.create(host=settings.hostname(), pid=_dead_pid(), project=packed_project, state="building",
                  heartbeat_at=time.time() - 1, bytes_total=10, bytes_done=5)

    async def scenario(app, screen, pilot):
        pane = screen.pane("build")
        table = pane.query_one("#workers-table")
        await wait_for(pilot, lambda: table.row_count == 3)
        lost = [table.get_row_at(i) for i in range(3) if str(table.get_row_at(i)[1]).startswith("lost")]
        assert len(lost) == 1 and lost[0][0].startswith(settings.hostname())
        assert "1 worker(s) lost" in text_of(screen, "#build-summary")
        await pilot.press("1")
        await wait_for(pilot, lambda: "1 lost" in text_of(screen, "#overview-body"))

    run(packed_project, scenario, tab="build")


def test_lost_after_missed_heartbeats_and_counted_per_project(packed_project):
    now = time.time()
    Worker.create(host="elsewhere", pid=1, project=packed_project, state="building", heartbeat_at=now - 8)
    Worker.create(host="elsewhere", pid=2, project=packed_project, state="building", heartbeat_at=now - 1)
    rows = {w.pid: w for w in views.worker_rows(packed_project.id, at=now)}
    assert rows[1].lost and rows[1].state == "lost" and rows[1].rate == 0.0
    assert not rows[2].lost
    (row,) = [r for r in views.project_rows() if r.id == packed_project.id]
    assert (row.workers, row.lost_workers) == (1, 1)


def test_staging_gauge_reads_the_disk_when_no_live_worker_reports(packed_project):
    # the last report of a worker gone a minute ago said 31.8 GiB used: stale, not shown
    Worker.create(host="elsewhere", pid=7, project=packed_project, state="idle", heartbeat_at=time.time() - 60,
                  staging_total=100 << 30, staging_used=int(31.8 * (1 << 30)), staging_free=68 << 30)
    disk = shutil.disk_usage(packed_project.staging_dir if shutil.os.path.exists(packed_project.staging_dir)
                             else shutil.os.path.dirname(packed_project.staging_dir))
    view = views.build_view(packed_project.id)
    assert view.staging.source == "disk" and view.staging.total == disk.total

    async def scenario(app, screen, pilot):
        pane = screen.pane("build")
        await wait_for(pilot, lambda: pane.polls > 0)
        gauge = text_of(screen, "#staging-gauge")
        assert f"/{fmt.size(disk.total)} used" in gauge and "31.8 GiB" not in gauge

    run(packed_project, scenario, tab="build")


def test_paused_refresh_stays_visible_in_the_header(packed_project):
    async def scenario(app, screen, pilot):
        await wait_for(pilot, lambda: screen.pane("overview").polls > 0)
        assert "REFRESH PAUSED" not in header_text(app)
        await pilot.press("z")
        await wait_for(pilot, lambda: "REFRESH PAUSED" in header_text(app))
        polls = screen.pane("overview").polls
        await pilot.pause(1.5)
        assert screen.pane("overview").polls == polls and "REFRESH PAUSED" in header_text(app)
        await pilot.press("z")
        await wait_for(pilot, lambda: "REFRESH PAUSED" not in header_text(app))

    run(packed_project, scenario)


def test_the_header_names_the_store_without_its_password():
    assert short_store("postgresql://ops:****@db1:5432/ptolemy") == "pg ops@db1:5432/ptolemy"
    assert short_store("postgresql://ops:s3cret@db1:5432/ptolemy") == "pg ops@db1:5432/ptolemy"
    home = shutil.os.path.expanduser("~")
    assert short_store(f"sqlite:///{home}/.local/share/ptolemy/ptolemy.db") == "sqlite ~/.local/share/ptolemy/ptolemy.db"


def test_store_label_in_the_header(packed_project):
    import asyncio

    from ptolemy_tui.screens.app import PtolemyApp

    async def main():
        app = PtolemyApp(watch_tty=False, store_label="postgresql://ops:****@db1:5432/ptolemy")
        async with app.run_test(size=(100, 24)) as pilot:
            await wait_for(pilot, lambda: "pg ops@db1:5432/ptolemy" in header_text(app))
            assert "****" not in header_text(app)

    asyncio.run(main())


def test_resorting_keeps_open_directories_open(packed_project):
    async def scenario(app, screen, pilot):
        pane = screen.pane("tree")
        tree = pane.tree
        await wait_for(pilot, lambda: pane.loads >= 1)
        docs = next(n for n in tree.root.children if n.data["name"] == "docs")
        tree.focus()
        tree.move_cursor(docs)
        await pilot.press("right")
        await wait_for(pilot, lambda: len(docs.children) > 0)
        await pilot.press("o")
        await wait_for(pilot, lambda: pane.sort == "name" and pane.loads >= 4)
        docs = next(n for n in tree.root.children if n.data["name"] == "docs")
        await wait_for(pilot, lambda: docs.is_expanded and any(c.data["name"] == "drafts" for c in docs.children))

    run(packed_project, scenario, tab="tree")


def test_elapsed_and_finished_on_the_build_tab_and_the_notice(packed_project):
    start = time.time() - 125
    Container.update(state="built", started_at=start, finished_at=start + 120).where(
        Container.project == packed_project.id).execute()
    Project.update(status="building").where(Project.id == packed_project.id).execute()

    async def scenario(app, screen, pilot):
        app.notify_mode = "bell"
        pane = screen.pane("build")
        await wait_for(pilot, lambda: pane.polls > 0)
        assert "elapsed" in text_of(screen, "#build-summary") and "finished" not in text_of(screen, "#build-summary")
        Project.update(status="built").where(Project.id == packed_project.id).execute()
        await wait_for(pilot, lambda: "finished" in text_of(screen, "#build-summary"))
        assert "elapsed 2m00s" in text_of(screen, "#build-summary")
        assert app.notices == ["\a"]  # one bell for the one transition

    run(packed_project, scenario, tab="build")


def test_notice_sequences():
    assert notice_sequence("off", "x") == ""
    assert notice_sequence("bell", "x") == "\a"
    assert notice_sequence("osc9", "build of demo finished") == "\x1b]9;build of demo finished\x07"
    # nothing from a project name can end the sequence early or start another
    assert notice_sequence("osc777", "a\x07b\x1b]c;d") == "\x1b]777;notify;Ptolemy;ab]cd\x07"


def test_blitz_over_budget_offers_to_build_anyway(packed_project):
    from ptolemy_tui.screens.base import ConfirmScreen
    from ptolemy_tui.services import build

    Project.update(staging_budget=packed_project.car_size).where(Project.id == packed_project.id).execute()

    async def scenario(app, screen, pilot):
        await wait_for(pilot, lambda: screen.pane("overview").polls > 0)
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "over the staging budget" in app.screen.question and "as --force" in app.screen.question
        await pilot.press("y")
        await wait_for(pilot, lambda: Project.get_by_id(packed_project.id).status in ("building", "built"),
                       timeout=20)

    try:
        run(packed_project, scenario)
    finally:
        if Project.get_by_id(packed_project.id).status == "building":
            build.cancel(packed_project.name)
        build.wait_for_workers(packed_project.name, timeout=20)


def test_failure_advice_names_the_fix(packed_project):
    from ptolemy_tui.store import transitions

    Project.update(status="building").where(Project.id == packed_project.id).execute()
    Container.update(state="built").where(Container.project == packed_project.id).execute()
    box = Container.select().where(Container.project == packed_project.id).first()
    Container.update(state="failed", error="source changed since scan: docs/a.txt").where(
        Container.id == box.id).execute()
    assert transitions.finalize_build(packed_project.id) == "failed"
    message = Project.get_by_id(packed_project.id).message
    assert "source changed since the scan" in message and f"ptolemy scan {packed_project.name}" in message
    assert "retry" not in message

    async def scenario(app, screen, pilot):
        await wait_for(pilot, lambda: "press s (rescan)" in text_of(screen, "#overview-body"))

    run(packed_project, scenario)
    Container.update(error="worker killed").where(Container.id == box.id).execute()
    Project.update(status="building").where(Project.id == packed_project.id).execute()
    transitions.finalize_build(packed_project.id)
    assert "ptolemy retry" in Project.get_by_id(packed_project.id).message


def test_add_a_worker_to_a_running_build(packed_project):
    from ptolemy_tui.errors import UsageError
    from ptolemy_tui.services import build

    with pytest.raises(UsageError, match="no build is running"):
        build.add_workers(packed_project.name)
    Project.update(status="building").where(Project.id == packed_project.id).execute()

    async def scenario(app, screen, pilot):
        await wait_for(pilot, lambda: screen.pane("build").polls > 0)
        await pilot.press("plus")
        await wait_for(pilot, lambda: Worker.select().where(Worker.project == packed_project.id).count() == 1)

    try:
        run(packed_project, scenario, tab="build")
    finally:
        build.cancel(packed_project.name)
        build.wait_for_workers(packed_project.name, timeout=20)


def test_column_sorting_in_the_containers_table(packed_project):
    async def scenario(app, screen, pilot):
        pane = screen.pane("containers")
        table = pane.query_one("#containers-table")
        n = Container.select().where(Container.project == packed_project.id).count()
        await wait_for(pilot, lambda: table.row_count == n)
        table.focus()
        await pilot.press("o")  # by #
        await pilot.press("o")  # by state
        await pilot.press("o")  # by fill
        await wait_for(pilot, lambda: "sort: fill ↑" in text_of(screen, "#containers-summary"))
        fills = [float(str(table.get_row_at(i)[2]).split()[-1].rstrip("%")) for i in range(n)]
        assert fills == sorted(fills)
        await pilot.press("O")
        await wait_for(pilot, lambda: "sort: fill ↓" in text_of(screen, "#containers-summary"))
        fills = [float(str(table.get_row_at(i)[2]).split()[-1].rstrip("%")) for i in range(n)]
        assert fills == sorted(fills, reverse=True) and fills[0] > fills[-1]

    run(packed_project, scenario, tab="containers")


def test_filter_items_log_and_tree(packed_project):

    from ptolemy_tui.screens.items import ContainerItemsScreen, ItemsTable
    from ptolemy_tui.services import events

    events.record(packed_project, "an error worth finding", level="error")
    events.record(packed_project, "routine news")
    shard_box = Container.select().where((Container.project == packed_project.id) &
                                         (Container.shard_count > 0)).order_by(Container.seq).first()

    async def scenario(app, screen, pilot):
        # the log: by level (L) and by text (/)
        await pilot.press("6")
        log = screen.pane("log")
        await wait_for(pilot, lambda: log.lines >= 2)
        for _ in range(3):  # debug -> info -> warning -> error
            await pilot.press("L")
        await wait_for(pilot, lambda: log.lines == 1)
        await pilot.press("L")  # back to everything
        await wait_for(pilot, lambda: log.lines >= 2)
        await pilot.press("slash", *"routine")
        await wait_for(pilot, lambda: log.lines == 1)
        assert "routine" in str(screen.query_one("#log-filter-line").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: log.lines >= 2)
        # the tree: files by name in each open directory, directories stay
        await pilot.press("2")
        tree = screen.pane("tree")
        await wait_for(pilot, lambda: tree.loads >= 1)
        await pilot.press("slash", *"recording")
        await wait_for(pilot, lambda: tree.filter_text == "recording" and tree.tree.root.children
                       and all(c.data["kind"] == "dir" for c in tree.tree.root.children))
        video = next(c for c in tree.tree.root.children if c.data["name"] == "video")
        video.expand()
        await wait_for(pilot, lambda: [c.data["name"] for c in video.children] == ["big-recording.bin"])
        await pilot.press("escape")
        # the items of one container
        await pilot.press("3")
        table = screen.pane("containers").query_one("#containers-table")
        await wait_for(pilot, lambda: table.row_count > 0)
        table.focus()
        table.move_cursor(row=table.get_row_index(str(shard_box.id)))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ContainerItemsScreen))
        items = app.screen.query_one(ItemsTable)
        await wait_for(pilot, lambda: items.row_count == shard_box.item_count)
        await pilot.press("slash", *"ptolemy1")
        await wait_for(pilot, lambda: items.row_count == 1 and items.total == 1)
        assert "ptolemy1" in str(items.get_row_at(0)[1])

    run(packed_project, scenario)


def test_footer_help_and_palette(packed_project):
    import asyncio

    from textual.widgets import Static

    from ptolemy_tui.screens.app import PtolemyApp
    from ptolemy_tui.screens.base import HelpScreen
    from ptolemy_tui.screens.project import ProjectScreen
    from ptolemy_tui.screens.projects import ProjectsTable

    async def main():
        app = PtolemyApp(watch_tty=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: app.screen.query_one(ProjectsTable).row_count == 1)
            footer = {b.binding.description for b in app.screen.active_bindings.values() if b.binding.show}
            assert "Open" in footer  # enter opens, and the footer says so
            titles = [c.title for c in app.get_system_commands(app.screen)]
            build = f"Build project {packed_project.name}"
            assert build in titles and titles.index(build) < titles.index("Theme")  # before Textual's own
            command = next(c for c in app.get_system_commands(app.screen) if c.title == build)
            command.callback()
            await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen) and app.screen.active_tab == "build")
            await wait_for(pilot, lambda: Project.get_by_id(packed_project.id).status in ("building", "built"),
                           timeout=20)
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
            body = str(app.screen.query_one("#help-body", Static).render())
            assert "1  Overview" in body and "1 Overview" not in body

    from ptolemy_tui.services import build as build_service

    try:
        asyncio.run(main())
    finally:
        if Project.get_by_id(packed_project.id).status == "building":
            build_service.cancel(packed_project.name)
        build_service.wait_for_workers(packed_project.name, timeout=20)


def test_form_shows_every_error_in_its_own_words_and_tabs_field_to_field(sqlite_store, tmp_path):
    import asyncio

    from textual.widgets import Input, Static

    from ptolemy_tui.screens.app import PtolemyApp
    from ptolemy_tui.screens.form import ProjectForm

    (tmp_path / "tree").mkdir()

    async def main():
        app = PtolemyApp(watch_tty=False)
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, ProjectForm))
            form = app.screen
            await pilot.press(*"night")
            await pilot.press("tab")
            assert app.focused.id == "target_dir"
            await pilot.press(*str(tmp_path / "nowhere"))
            await pilot.press("tab")
            assert app.focused.id == "staging_dir"  # not the "…" button between them
            form.query_one("#staging_dir", Input).value = str(tmp_path / "staging")
            form.query_one("#car_size", Input).value = "12XB"
            form.query_one("#workers", Input).value = "0"
            await pilot.press("ctrl+s")

            def errors():
                return {key: str(form.query_one(f"#err-{key}", Static).render())
                        for key in ("target_dir", "car_size", "workers")
                        if form.query_one(f"#err-{key}", Static).display}

            await wait_for(pilot, lambda: len(errors()) == 3)
            shown = errors()
            assert shown["target_dir"].startswith("✗ Target dir: no such directory")
            assert "--" not in "".join(shown.values())  # the form's words, not the CLI's flags
            assert "Workers" in shown["workers"] and "CAR size" in shown["car_size"]
            assert isinstance(app.screen, ProjectForm)

    asyncio.run(main())


def test_shard_size_hint(tmp_path):
    from ptolemy_tui.services import projects

    (tmp_path / "t").mkdir()
    spec = projects.ProjectSpec("p", str(tmp_path / "t"), str(tmp_path / "s"), car_size="254MiB", shard_size="64MiB")
    (hint,) = [w for w in projects.validate(spec).warnings if "shards" in w]
    assert "--shard-size 31MiB" in hint
    spec = projects.ProjectSpec("p", str(tmp_path / "t"), str(tmp_path / "s"), car_size="254MiB", shard_size="16MiB")
    assert not [w for w in projects.validate(spec).warnings if "shards" in w]


def test_a_rescan_says_what_changed(packed_project):
    from pathlib import Path

    target = Path(packed_project.target_dir)
    changed = next(p for p in sorted(target.rglob("*.txt")))
    changed.write_text(changed.read_text() + " and more")
    removed = sorted(target.rglob("*.txt"))[-1]
    removed.unlink()

    async def scenario(app, screen, pilot):
        await wait_for(pilot, lambda: screen.pane("overview").polls > 0)
        await pilot.press("s")
        await wait_for(pilot, lambda: any("rescan: 0 added, 1 changed, 1 removed;" in n.message
                                          and "back to packing" in n.message for n in app._notifications),
                       timeout=30)

    run(packed_project, scenario)


def test_a_car_moved_off_staging_shows_as_moved(packed_project, tmp_path):
    from ptolemy_tui.store.models import Car

    helpers.fake_build_rows(packed_project)  # CAR rows whose files are not in staging: moved

    async def scenario(app, screen, pilot):
        table = screen.pane("cars").query_one("#cars-table")
        await wait_for(pilot, lambda: table.row_count == 2)
        assert str(table.get_row_at(0)[5]).startswith("moved ")

    run(packed_project, scenario, tab="cars")
    assert Car.select().count() == 2


def test_car_detail_panel_shows_the_path_whole_and_copies_it(packed_project):
    from ptolemy_tui.store.models import Car

    helpers.fake_build_rows(packed_project)
    first = Car.select().order_by(Car.id).first()
    long_path = "/staging/" + "deep/" * 12 + "baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2m01.car"
    Car.update(path=long_path).where(Car.id == first.id).execute()

    async def scenario(app, screen, pilot):
        table = screen.pane("cars").query_one("#cars-table")
        await wait_for(pilot, lambda: table.row_count == 2)
        table.focus()
        table.move_cursor(row=table.get_row_index(str(first.id)))
        detail = screen.query_one("#car-detail")
        await wait_for(pilot, lambda: "deep/" in str(detail.render()))
        body = str(detail.render()).replace("\n", "")
        assert long_path in body and first.payload_cid in body and first.piece_cid in body
        await pilot.press("P")
        await wait_for(pilot, lambda: app.clipboard == long_path)

    run(packed_project, scenario, tab="cars")


def test_directory_picker_takes_a_typed_path_with_completion(sqlite_store, tmp_path):
    import asyncio

    from textual.widgets import Input

    from ptolemy_tui.screens.app import PtolemyApp
    from ptolemy_tui.screens.form import DirectoryPicker, ProjectForm, complete_path

    (tmp_path / "archive-2019" / "photos").mkdir(parents=True)
    (tmp_path / "archive-2020").mkdir()
    assert complete_path(str(tmp_path / "arch")) == str(tmp_path / "archive-20")
    assert complete_path(str(tmp_path / "archive-2019")) == str(tmp_path / "archive-2019") + "/"
    assert complete_path(str(tmp_path / "zzz")) == str(tmp_path / "zzz")

    async def main():
        app = PtolemyApp(watch_tty=False)
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, ProjectForm))
            form = app.screen
            form.query_one("#target_dir", Input).value = str(tmp_path / "not-yet" / "deeper")
            form.query_one("#target_dir", Input).focus()
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, DirectoryPicker))
            picker = app.screen
            assert picker.start == tmp_path  # the nearest existing parent
            typed = picker.query_one("#picked-path", Input)
            typed.focus()
            typed.value = str(tmp_path / "archive-2019" / "ph")
            await pilot.press("tab")
            assert typed.value == str(tmp_path / "archive-2019" / "photos") + "/"
            await pilot.press("enter")
            await wait_for(pilot, lambda: str(picker.query_one("#dirs").path) == str(tmp_path / "archive-2019" / "photos"))
            await pilot.press("u")
            await wait_for(pilot, lambda: isinstance(app.screen, ProjectForm))
            assert form.query_one("#target_dir", Input).value == str(tmp_path / "archive-2019" / "photos")

    asyncio.run(main())


def test_skipped_entries_say_skipped_once(project):
    import os

    from ptolemy_tui.services import views

    os.mkfifo(os.path.join(project.target_dir, "a-pipe"))
    helpers.scan(project)
    (problem,) = [p for p in views.scan_problems(project.id) if p.path == "a-pipe"]
    assert problem.reason == "skipped: fifo"

    async def scenario(app, screen, pilot):
        pane = screen.pane("tree")
        await wait_for(pilot, lambda: pane.polls > 0 and "a-pipe" in text_of(screen, "#scan-errors"))
        assert "a-pipe: skipped: fifo" in text_of(screen, "#scan-errors")
        assert "skipped: skipped" not in text_of(screen, "#scan-errors")

    run(project, scenario, tab="tree")


def test_a_newline_in_a_name_is_escaped_in_the_tree_and_the_items(project):
    import os

    from ptolemy_tui.services import views

    os.makedirs(os.path.join(project.target_dir, "odd"), exist_ok=True)
    with open(os.path.join(project.target_dir, "odd", "two\nlines.txt"), "w") as fh:
        fh.write("x")
    helpers.scan(project)
    helpers.containerize(project)
    tree = views.tree_view(project.id)
    odd = next(n for n in views.tree_children(project.id, tree.root.id, "name", 0) if n.name == "odd")
    (child,) = views.tree_children(project.id, odd.id, "name", 0)
    assert child.name == "two\\nlines.txt"
    box = Container.select().where(Container.project == project.id).order_by(Container.seq).first()
    paths = []
    for c in Container.select().where(Container.project == project.id):
        paths += [r.car_path for r in views.container_items(c.id, 0, 1000, "lines").rows]
    assert paths == ["odd/two\\nlines.txt"] and box is not None


def test_the_tree_is_live_during_a_scan(project, monkeypatch):
    from ptolemy_tui.services import scan as scan_service
    from ptolemy_tui.store.models import Directory

    monkeypatch.setattr(scan_service, "LIVE_EVERY", 0.0)  # every progress tick (a small tree has only a few)
    seen = []

    def progress(s):
        if s.state == "running":
            root = Directory.get((Directory.project == project.id) & Directory.parent.is_null())
            seen.append(root.total_bytes)

    done = scan_service.run_scan(project, on_progress=progress)
    assert done.state == "done" and seen and max(seen) > 0  # not zeros until the end
    assert max(seen) <= done.bytes
