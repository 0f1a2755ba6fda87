"""A large project stays responsive: 5,000 containers and a 50,000-file directory are read off the event loop,
tables fill in chunks and the tree pages. The loop's longest stall is printed, not asserted: timings on shared
test machines are noise (the project's rule); bench/scale.py measures key latency and stalls against targets."""
from __future__ import annotations

import asyncio

import pytest

from ptolemy_tui.screens.app import PtolemyApp
from ptolemy_tui.screens.project import ProjectScreen
from ptolemy_tui.services import projects
from ptolemy_tui.store.models import Container, Directory, File, Scan, database
from tests.screens.helpers import StallMeter, wait_for
from tests.states import force_status

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

CONTAINERS = 5000
FILES = 50_000


@pytest.fixture
def big_project(sqlite_store, tmp_path):
    (tmp_path / "t").mkdir()
    project, _ = projects.create(projects.ProjectSpec("big", str(tmp_path / "t"), str(tmp_path / "s"),
                                                      car_size="31GiB", shard_size="1GiB"))
    with database.atomic():
        root = Directory.create(project=project, parent=None, path=b"", name=b"", total_bytes=FILES * 1000,
                                total_files=FILES, file_count=FILES)
        rows = [{"project": project.id, "directory": root.id, "path": f"f{i:06d}".encode(),
                 "name": f"f{i:06d}".encode(), "size": 1000 + i} for i in range(FILES)]
        for start in range(0, FILES, 5000):
            File.insert_many(rows[start:start + 5000]).execute()
        Scan.create(project=project, state="done", files=FILES, bytes=FILES * 1000)
        boxes = [{"project": project.id, "seq": i, "predicted_size": 30 << 30, "data_bytes": 30 << 30,
                  "item_count": 10, "state": "built" if i < 1200 else "pending"} for i in range(CONTAINERS)]
        for start in range(0, CONTAINERS, 1000):
            Container.insert_many(boxes[start:start + 1000]).execute()
    force_status(project, "containerized")
    return project




def test_five_thousand_containers_and_a_wide_directory(big_project):
    async def main():
        app = PtolemyApp(project="big", tab="containers", watch_tty=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen))
            screen = app.screen
            meter = StallMeter(app)
            table = screen.pane("containers").query_one("#containers-table")
            await wait_for(pilot, lambda: table.row_count == CONTAINERS, timeout=60)
            assert "5,000 containers" in str(screen.query_one("#containers-summary").render())
            await pilot.press("G")  # to the bottom and back: the table scrolls without stalling
            await pilot.press("g")
            await pilot.press("2")
            pane = screen.pane("tree")
            await wait_for(pilot, lambda: pane.loads >= 1, timeout=30)
            assert len(pane.tree.root.children) == pane.CHUNK + 1  # one page, not 50,000 nodes
            await pilot.press("1")
            await wait_for(pilot, lambda: screen.pane("overview").polls >= 1, timeout=30)
            await pilot.pause(0.2)
            return meter.worst

    worst = asyncio.run(main())
    print(f"longest event-loop stall: {worst * 1000:.0f} ms")
