"""The Build tab's serving panel: transfers `ptolemy serve` records show up live (client, piece, bytes, rate);
an inline project's staging line says that it needs no staging space."""
from __future__ import annotations

import asyncio

import pytest
from textual.widgets import Static

from ptolemy_tui.screens.app import PtolemyApp
from ptolemy_tui.screens.project import ProjectScreen
from ptolemy_tui.services import pieces
from ptolemy_tui.store.models import Project, now
from tests.screens.helpers import wait_for

pytestmark = pytest.mark.timeout(60)


def test_serving_panel_shows_live_transfers_and_inline_needs_no_staging(packed_project):
    Project.update(load_type="inline").where(Project.id == packed_project.id).execute()
    t = now()
    pieces.save_transfers([
        dict(id=None, server="host:1", client="10.0.0.7:5123", project_id=packed_project.id,
             piece_cid="baga6ea4seaqexamplepiececid0000000000000000000000000000000000001", inline=True,
             range_start=0, range_end=8 << 20, bytes_sent=3 << 20, rate=150e6, status=200, state="active",
             started_at=t - 2, updated_at=t),
        dict(id=None, server="host:1", client="10.0.0.8:6000", project_id=packed_project.id,
             piece_cid="baga6ea4seaqexamplepiececid0000000000000000000000000000000000002", inline=False,
             range_start=100, range_end=200, bytes_sent=100, rate=0.0, status=206, state="done",
             started_at=t - 5, updated_at=t - 4, finished_at=t - 4),
    ])

    async def main():
        app = PtolemyApp(project=packed_project.name, tab="build", watch_tty=False)
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen))
            screen = app.screen
            panel = screen.query_one("#transfers")
            await wait_for(pilot, lambda: panel.display)
            title = str(screen.query_one("#transfers-title", Static).render())
            assert "1 live transfer" in title
            table = screen.query_one("#transfers-table")
            assert table.row_count == 2
            cells = [str(c) for c in table.get_row_at(0)]
            assert cells[0] == "10.0.0.7:5123" and cells[2] == "inline" and "3.0 MiB" in cells[4]
            assert "MiB/s" in cells[5]
            assert "staging need near zero" in str(screen.query_one("#staging-gauge", Static).render())

    asyncio.run(main())
