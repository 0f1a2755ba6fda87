"""Write SVG screenshots of the TUI's main screens into docs/screenshots/ (for the README).

    .venv/bin/python scripts/screenshots.py [--size 120x40] [--out docs/screenshots]

Runs the app headless on a throwaway SQLite store holding the demo tree: scanned and packed by the real
services, with two CARs and two workers (one waiting for staging space) recorded as a build in progress writes
them, so every tab has something to show. Colours are on (NO_COLOR is ignored here).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCREENS = [
    # file name, tab (None: the projects screen), keys pressed after it is loaded
    ("projects", None, ()),
    ("project-form", None, ("n",)),
    ("overview", "overview", ()),
    ("scan-tree", "tree", ()),
    ("containers", "containers", ()),
    ("container-items", "containers", ("enter",)),
    ("build", "build", ()),
    ("cars", "cars", ()),
    ("log", "log", ()),
    ("help", "build", ("question_mark",)),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="120x40")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    os.environ.pop("NO_COLOR", None)
    work = Path(tempfile.mkdtemp(prefix="ptolemy-shots-"))
    os.environ["XDG_DATA_HOME"] = str(work / "xdg")
    os.environ["XDG_STATE_HOME"] = str(work / "state")
    try:
        from ptolemy_tui.store import db

        db.open_database(f"sqlite:///{work / 'ptolemy.db'}")
        from tests.screens import helpers

        base = Path("/tmp/ptolemy-demo")  # a short, stable path for the pictures
        shutil.rmtree(base, ignore_errors=True)
        helpers.showcase(base, files=300, second_files=20)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, tab, keys in SCREENS:
            svg = asyncio.run(shoot(tab, keys, (width, height)))
            (out / f"{name}.svg").write_text(svg, encoding="utf-8")
            print(out / f"{name}.svg")
        shutil.rmtree(base, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


async def shoot(tab: str | None, keys: tuple[str, ...], size: tuple[int, int]) -> str:
    from ptolemy_tui.screens.app import PtolemyApp
    from ptolemy_tui.screens.project import ProjectScreen
    from ptolemy_tui.screens.projects import ProjectsTable
    from tests.screens.helpers import wait_for

    app = PtolemyApp(project="demo" if tab else None, tab=tab or "overview", watch_tty=False)
    async with app.run_test(size=size) as pilot:
        if tab is None:
            await wait_for(pilot, lambda: app.screen.query_one(ProjectsTable).row_count == 2)
        else:
            await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen))
            pane = app.screen.pane(tab)
            await wait_for(pilot, lambda: pane.polls >= 2 and getattr(pane, "loads", 1) >= 1)
            if tab == "tree":  # open the biggest directories a level down
                for node in list(pane.tree.root.children)[:2]:
                    node.expand()
                await pilot.pause(0.5)
        await pilot.pause(0.3)
        if keys:
            await pilot.press(*keys)
            await pilot.pause(0.8)
        app.paused_refresh = True
        await pilot.pause(0.2)
        return app.export_screenshot()


if __name__ == "__main__":
    sys.exit(main())
