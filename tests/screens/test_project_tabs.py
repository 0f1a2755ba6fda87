"""The project screen's tabs and actions on a real SQLite store, with the real scan, containerize and build
services (the build tab fed by real worker processes)."""
from __future__ import annotations

import asyncio
import os
import socket

import pytest
from textual.widgets import RichLog, Static

from ptolemy_tui.screens.app import PtolemyApp
from ptolemy_tui.screens.base import ConfirmScreen, HelpScreen
from ptolemy_tui.screens.items import ContainerItemsScreen, ItemsTable
from ptolemy_tui.screens.project import ProjectScreen
from ptolemy_tui.store.models import Car, Container, ContainerItem, Project
from tests.screens import helpers
from tests.screens.helpers import wait_for

pytestmark = pytest.mark.timeout(60)


def run(project, scenario, tab="overview", size=(80, 24)):
    async def main():
        app = PtolemyApp(project=project.name, tab=tab, watch_tty=False)
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen))
            await scenario(app, app.screen, pilot)
        return app

    return asyncio.run(main())


def text_of(screen, selector) -> str:
    return str(screen.query_one(selector, Static).render())


def test_overview_scan_and_pack_with_the_real_services(project):
    async def scenario(app, screen, pilot):
        pane = screen.pane("overview")
        await wait_for(pilot, lambda: pane.polls > 0)
        body = text_of(screen, "#overview-body")
        assert "defined" in body and "next step" in body and "press s" in body
        await pilot.press("s")
        await wait_for(pilot, lambda: Project.get_by_id(project.id).status == "scanned", timeout=30)
        await wait_for(pilot, lambda: not screen.job_running)
        await pilot.press("1")
        await wait_for(pilot, lambda: "press c" in text_of(screen, "#overview-body"))
        await pilot.press("c")
        await wait_for(pilot, lambda: Project.get_by_id(project.id).status == "containerized", timeout=30)
        await wait_for(pilot, lambda: "press b" in text_of(screen, "#overview-body"))
        assert Container.select().where(Container.project == project.id).count() >= 3

    run(project, scenario)


def test_packing_runs_in_its_own_process_and_x_cancels_it(project, tmp_path, monkeypatch):
    """The TUI only starts the pack (a detached `ptolemy containerize`, frozen here at mid-pack) and follows it
    through the store; x cancels the pack, not a build, and nothing of it stays."""
    from tests.worker.faultkit import arm, resume, wait_stopped

    helpers.scan(project)
    faults = arm(monkeypatch, "mid-pack", tmp_path / "faults")

    async def scenario(app, screen, pilot):
        await wait_for(pilot, lambda: screen.pane("overview").polls > 0)
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.job_running)
        handle, _after = app.jobs[project.id]
        pid = await asyncio.to_thread(wait_stopped, faults, "mid-pack")
        assert pid == handle.proc.pid != os.getpid()
        await wait_for(pilot, lambda: "containerizing" in text_of(screen, "#overview-body"))
        await pilot.press("c")  # one job at a time
        await wait_for(pilot, lambda: any("containerize is still running here" in str(n.message)
                                          for n in app._notifications))
        await pilot.press("x")
        await wait_for(pilot, lambda: any("cancelling the containerize" in str(n.message) for n in app._notifications))
        assert not isinstance(app.screen, ConfirmScreen)  # not the build's question
        resume(pid)
        await wait_for(pilot, lambda: not screen.job_running, timeout=30)
        await wait_for(pilot, lambda: Project.get_by_id(project.id).status == "failed")
        assert Container.select().where(Container.project == project.id).count() == 0

    run(project, scenario)


def test_scan_tree_is_lazy_sorted_and_expandable(packed_project):
    async def scenario(app, screen, pilot):
        pane = screen.pane("tree")
        tree = pane.tree
        await wait_for(pilot, lambda: pane.loads >= 1)
        names = [n.data["name"] for n in tree.root.children]
        assert names[0] == "video"  # the big file's directory first: sorted by size
        assert "scan done" in text_of(screen, "#scan-line")
        docs = next(n for n in tree.root.children if n.data["name"] == "docs")
        assert not docs.children  # nothing below is loaded before it is opened
        tree.focus()
        tree.move_cursor(docs)
        await pilot.press("right")
        await wait_for(pilot, lambda: pane.loads >= 2 and len(docs.children) > 0)
        assert any(c.data["name"] == "drafts" for c in docs.children)
        await pilot.press("h")  # collapse, then to the parent
        assert not docs.is_expanded
        await pilot.press("o")
        await wait_for(pilot, lambda: pane.sort == "name" and pane.loads >= 3)
        names = [n.data["name"] for n in tree.root.children]
        assert names == sorted(names)

    run(packed_project, scenario, tab="tree")


def test_tree_pages_a_wide_directory(sqlite_store, tmp_path):
    target = tmp_path / "wide"
    target.mkdir()
    for i in range(450):
        (target / f"f{i:04d}").write_bytes(b"x" * (i + 1))
    from ptolemy_tui.services import projects

    project, _ = projects.create(projects.ProjectSpec("wide", str(target), str(tmp_path / "st"),
                                                      car_size="2MiB", shard_size="1MiB"))
    helpers.scan(project)

    async def scenario(app, screen, pilot):
        pane = screen.pane("tree")
        await wait_for(pilot, lambda: pane.loads >= 1)
        root = pane.tree.root
        assert len(root.children) == pane.CHUNK + 1  # one chunk and the "more" row
        more = root.children[-1]
        assert more.data["kind"] == "more"
        pane.tree.focus()
        pane.tree.move_cursor(more)
        await pilot.press("enter")
        await wait_for(pilot, lambda: pane.loads >= 2)
        assert len(root.children) == 2 * pane.CHUNK + 1
        assert root.children[0].data["bytes"] == 450  # largest first

    run(project, scenario, tab="tree")


def test_containers_tab_and_items(packed_project):
    n = Container.select().where(Container.project == packed_project.id).count()

    async def scenario(app, screen, pilot):
        pane = screen.pane("containers")
        table = pane.query_one("#containers-table")
        await wait_for(pilot, lambda: table.row_count == n)
        assert f"{n} containers" in text_of(screen, "#containers-summary")
        assert "overall fill" in text_of(screen, "#containers-summary")
        # the container holding the big file's shards
        shard_box = Container.select().where((Container.project == packed_project.id) &
                                             (Container.shard_count > 0)).order_by(Container.seq).first()
        table.focus()
        table.move_cursor(row=table.get_row_index(str(shard_box.id)))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ContainerItemsScreen))
        items = app.screen.query_one(ItemsTable)
        await wait_for(pilot, lambda: items.row_count == shard_box.item_count)
        rows = [items.get_row_at(i) for i in range(items.row_count)]
        assert any(".ptolemy" in r[1] and r[5] != "" for r in rows)  # a shard: its path and index
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen))
        # filter by state
        await pilot.press("slash", *"built")
        await wait_for(pilot, lambda: table.row_count == 0)
        await pilot.press("escape")
        await wait_for(pilot, lambda: table.row_count == n)

    run(packed_project, scenario, tab="containers")


def test_build_tab_shows_workers_staging_and_waiting(packed_project):
    helpers.fake_build_rows(packed_project, waiting=True)

    async def scenario(app, screen, pilot):
        pane = screen.pane("build")
        table = pane.query_one("#workers-table")
        await wait_for(pilot, lambda: table.row_count == 2)
        waiting = screen.query_one("#build-waiting", Static)
        banner = str(waiting.render())
        # the binding constraint (the budget, not the disk's free space) with its numbers, on one 80-column line
        assert waiting.display and banner.startswith("⏸ WAITING")
        assert "budget 228.0 MiB of 300 MiB used, next CAR needs 236.0 MiB" in banner
        assert "free" not in banner and len(banner) <= 78 and "\n" not in banner
        assert "62.0 GiB/100.0 GiB used" in text_of(screen, "#staging-gauge")
        row = table.get_row("stage1:4242")
        assert str(row[1]) == "building" and row[4] == "49.6"  # MiB/s, as every rate on screen
        assert "MiB/s" in str(table.columns[table.ordered_columns[4].key].label)
        assert str(table.get_row("stage1:4243")[1]) == "waiting for staging"

    run(packed_project, scenario, tab="build")


def test_pause_resume_cancel_retry(packed_project):
    helpers.fake_build_rows(packed_project)
    box = Container.select().where(Container.project == packed_project.id).order_by(Container.seq.desc()).first()
    box.state, box.error = "failed", "source changed"
    box.save()

    async def scenario(app, screen, pilot):
        pane = screen.pane("build")
        await wait_for(pilot, lambda: pane.polls > 0)
        await pilot.press("p")
        await wait_for(pilot, lambda: Project.get_by_id(packed_project.id).paused)
        await wait_for(pilot, lambda: "PAUSED" in text_of(screen, "#build-summary"))
        assert "resume" in {b.binding.action for b in screen.active_bindings.values()}
        await pilot.press("r")
        await wait_for(pilot, lambda: not Project.get_by_id(packed_project.id).paused)
        await pilot.press("f")
        await wait_for(pilot, lambda: Container.get_by_id(box.id).state == "pending")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: Project.get_by_id(packed_project.id).status == "containerized")

    run(packed_project, scenario, tab="build")


def test_real_build_from_the_build_tab_then_cars_manifest_verify_copy(packed_project):
    """Real worker processes build the CARs; the build tab follows them; the CARs tab lists the results."""
    n = Container.select().where(Container.project == packed_project.id).count()

    async def scenario(app, screen, pilot):
        pane = screen.pane("build")
        await wait_for(pilot, lambda: pane.polls > 0)
        assert "no live workers" in text_of(screen, "#build-summary")
        pane.poll_interval = 0.05  # follow the short build closely
        await pilot.press("b")
        await wait_for(pilot, lambda: Project.get_by_id(packed_project.id).status == "built", timeout=45)
        # real worker processes (this host, their pids) appeared in the workers table while they ran
        assert pane.seen_workers, "no worker row was shown during the build"
        host = socket.gethostname()[:100]
        assert all(key.startswith(f"{host}:") for key in pane.seen_workers)
        assert any("building" in states or "idle" in states for states in pane.seen_workers.values())
        await wait_for(pilot, lambda: f"{n} built" in text_of(screen, "#build-summary"))
        assert "100%" in text_of(screen, "#build-summary")
        await pilot.press("5")
        cars = screen.pane("cars")
        table = cars.query_one("#cars-table")
        await wait_for(pilot, lambda: table.row_count == n)
        car = Car.select().join(Container).where(Car.project == packed_project.id).order_by(Container.seq).first()
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("y")
        assert app.clipboard == car.piece_cid
        await pilot.press("Y")
        assert app.clipboard == car.payload_cid
        await pilot.press("m")
        manifest = os.path.join(packed_project.staging_dir, "demo-manifest.csv")
        await wait_for(pilot, lambda: os.path.exists(manifest))
        assert car.piece_cid in open(manifest).read()
        seen = []
        app.notify = lambda message, **kw: seen.append(message)  # noqa: E731 - capture the outcome
        await pilot.press("v")
        await wait_for(pilot, lambda: any(f"verify: {n} of {n} CARs ok" in m for m in seen), timeout=30)

    run(packed_project, scenario, tab="build")


def test_log_follows_events(packed_project):
    from ptolemy_tui.services import events

    async def scenario(app, screen, pilot):
        pane = screen.pane("log")
        await wait_for(pilot, lambda: pane.lines >= 3)
        before = pane.lines
        events.record(packed_project, "a new line from a worker", level="warning")
        await wait_for(pilot, lambda: pane.lines == before + 1)
        log = screen.query_one("#log-view", RichLog)
        assert "a new line from a worker" in "".join(str(line.text) for line in log.lines)

    run(packed_project, scenario, tab="log")


def test_tab_keys_help_and_edit(packed_project):
    async def scenario(app, screen, pilot):
        for key, tab in (("2", "tree"), ("3", "containers"), ("4", "build"), ("5", "cars"), ("6", "log"),
                         ("1", "overview")):
            await pilot.press(key)
            await wait_for(pilot, lambda: screen.active_tab == tab)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        body = str(app.screen.query_one("#help-body", Static).render())
        assert "Scan" in body and "Pack" in body and "Back" in body
        await pilot.press("escape")
        await pilot.press("4")
        await wait_for(pilot, lambda: screen.active_tab == "build")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Start a blitz build (all containers in parallel)", "Start a serial build (one container at a time)",
                "Pause the build", "Cancel the build", "Retry failed containers"} <= set(titles)
        assert "Resume the build" not in titles  # offered only while paused
        assert "Scan the target tree" not in titles  # not offered on the build tab
        await pilot.press("1", "e")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ProjectForm")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)

    run(packed_project, scenario)


def test_scan_tree_lists_skipped_and_links(sqlite_store, tmp_path):
    target = tmp_path / "odd"
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "real.txt").write_text("data")
    (target / "link.txt").symlink_to("sub/real.txt")
    os.mkfifo(target / "pipe")
    from ptolemy_tui.services import projects

    project, _ = projects.create(projects.ProjectSpec("odd", str(target), str(tmp_path / "st"),
                                                      car_size="2MiB", shard_size="1MiB"))
    helpers.scan(project)

    async def scenario(app, screen, pilot):
        pane = screen.pane("tree")
        await wait_for(pilot, lambda: pane.loads >= 1 and pane.polls >= 1)
        box = screen.query_one("#scan-errors", Static)
        await wait_for(pilot, lambda: box.display)
        assert "pipe" in str(box.render())
        labels = {n.data["name"]: str(n.label) for n in pane.tree.root.children}
        assert "→ sub/real.txt" in labels["link.txt"]
        assert "skipped" in labels["pipe"]

    run(project, scenario, tab="tree")


def test_tree_is_live_while_a_scan_runs(packed_project):
    from ptolemy_tui.store.models import Directory, Scan

    async def scenario(app, screen, pilot):
        pane = screen.pane("tree")
        await wait_for(pilot, lambda: pane.loads >= 1 and pane.polls >= 1)
        root = Directory.get((Directory.project == packed_project.id) & (Directory.path == b""))
        running = Scan.create(project=packed_project, state="running", files=10, current_dir=b"incoming")
        Directory.create(project=packed_project, parent=root, path=b"incoming", name=b"incoming",
                         total_bytes=123_456_789, total_files=7)
        await wait_for(pilot, lambda: "scan running" in text_of(screen, "#scan-line"))
        await wait_for(pilot, lambda: any(n.data["name"] == "incoming" for n in pane.tree.root.children))
        running.state = "done"
        running.save()
        await wait_for(pilot, lambda: "scan done" in text_of(screen, "#scan-line"))
        # a finished scan reloads the tree in order: the new, biggest directory first
        await wait_for(pilot, lambda: pane.tree.root.children and pane.tree.root.children[0].data["name"] == "incoming")

    run(packed_project, scenario, tab="tree")


def test_mouse_clicks_tabs_and_rows(packed_project):
    async def scenario(app, screen, pilot):
        await pilot.click("#--content-tab-containers")
        await wait_for(pilot, lambda: screen.active_tab == "containers")
        table = screen.pane("containers").query_one("#containers-table")
        await wait_for(pilot, lambda: table.row_count > 0)
        await pilot.click("#--content-tab-build")
        await wait_for(pilot, lambda: screen.active_tab == "build")

    run(packed_project, scenario)


def test_container_items_page(packed_project):
    from ptolemy_tui.screens import items as items_module

    box = Container.select().where(Container.project == packed_project.id).order_by(Container.item_count.desc()).first()
    assert box.item_count > 10
    paths = [bytes(p).decode() for (p,) in ContainerItem.select(ContainerItem.car_path)
             .where(ContainerItem.container == box.id).order_by(ContainerItem.seq).tuples()]
    text = next(c for c in sorted(set("".join(paths)) - {" "}) if 10 < sum(c in p for p in paths) < len(paths))
    matches = [p for p in paths if text in p]

    async def scenario(app, screen, pilot):
        old = items_module.PAGE
        items_module.PAGE = 10
        try:
            app.push_screen(ContainerItemsScreen(box.id))
            await wait_for(pilot, lambda: isinstance(app.screen, ContainerItemsScreen))
            table = app.screen.query_one(ItemsTable)
            await wait_for(pilot, lambda: table.row_count == 10)
            first = table.get_row_at(0)[0]
            await pilot.press("n")
            await wait_for(pilot, lambda: table.page_offset == 10 and table.row_count > 0
                           and table.get_row_at(0)[0] != first)
            assert "rows 11-" in str(app.screen.query_one("#items-head", Static).render())
            await pilot.press("p")
            await wait_for(pilot, lambda: table.row_count and table.get_row_at(0)[0] == first)
            # filtered (a character some but not all paths hold, so the matches' seqs have gaps), the pages
            # follow the matches by key after the last seq shown, and `p` comes back
            await pilot.press("slash", *text, "enter")
            await wait_for(pilot, lambda: table.filter_text == text and table.row_count == 10)
            first_filtered = table.get_row_at(0)[0]
            last_seq = int(table.get_row_at(table.row_count - 1)[0])
            await pilot.press("n")
            await wait_for(pilot, lambda: table.row_count > 0 and table.get_row_at(0)[0] != first_filtered)
            assert int(table.get_row_at(0)[0]) > last_seq
            assert [str(table.get_row_at(i)[1]) for i in range(table.row_count)] == matches[10:20]
            await pilot.press("p")
            await wait_for(pilot, lambda: table.row_count and table.get_row_at(0)[0] == first_filtered)
        finally:
            items_module.PAGE = old

    run(packed_project, scenario)


def test_pack_again_asks_first(packed_project):
    from ptolemy_tui.store.models import Event

    def packs() -> int:
        return Event.select().where((Event.project == packed_project.id) &
                                    Event.text.startswith("containerized")).count()

    before = packs()

    async def scenario(app, screen, pilot):
        await wait_for(pilot, lambda: screen.pane("containers").polls > 0)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen)
        assert packs() == before
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: packs() == before + 1, timeout=30)
        assert Project.get_by_id(packed_project.id).status == "containerized"

    run(packed_project, scenario, tab="containers")
