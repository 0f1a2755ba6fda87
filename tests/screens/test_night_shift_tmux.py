"""The night shift's terminal-only items in a real terminal (tmux, 80x24): the staging banner fits one line and
names the binding constraint, a file name holding a newline shows escaped on one line, and the bell rings once
when a build finishes (PTOLEMY_NOTIFY=bell)."""
from __future__ import annotations

import shutil
import time

import pytest

from ptolemy_tui.store.models import Container, Project
from tests.screens import helpers
from tests.screens.test_demo_tmux import PTOLEMY, Tmux

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


@pytest.fixture
def odd_project(sqlite_store, tmp_path):
    project = helpers.make_project(tmp_path, files=20)
    (tmp_path / "data" / "docs" / "two\nlines.txt").write_text("a name with a newline")
    helpers.scan(project)
    helpers.containerize(project)
    helpers.fake_build_rows(project, waiting=True)
    return project


def _start(tmux: Tmux, tmp_path, *args: str) -> None:
    env = (f"env PTOLEMY_DB=sqlite:///{tmp_path}/ptolemy.db XDG_STATE_HOME={tmp_path}/state NO_COLOR=1 "
           f"PTOLEMY_NOTIFY=bell TERM=xterm-256color")
    tmux.start(f"{env} {PTOLEMY} tui {' '.join(args)}")
    tmux.run("set", "-g", "monitor-bell", "on")


def test_banner_escaping_and_bell_in_tmux(odd_project, tmp_path):
    tmux = Tmux(tmp_path, "night")
    _start(tmux, tmp_path, odd_project.name, "--tab", "build")
    try:
        shown = tmux.wait_for("WAITING", 30)
        (banner,) = [line for line in shown.splitlines() if "WAITING" in line]
        # one line of the 80 columns, the budget named with its numbers, nothing cut
        assert len(banner.rstrip()) <= 80 and "budget 228.0 MiB of 300 MiB used, next CAR needs 236.0 MiB" in banner
        assert "…" not in banner
        # the tree: the newline in the name is escaped, the row stays one row
        tmux.keys("2")
        tmux.wait_for("sort: size")
        tmux.keys("/")
        tmux.wait_for("filter names in each open directory")  # the filter line has the focus
        tmux.keys("-l", "lines")
        tmux.keys("Enter")
        shown = tmux.wait_for("o Sort")  # the footer of the tree, not of the filter line: the tree has the focus
        for _ in range(12):  # down to docs/ and open it
            if "two\\nlines.txt" in shown:
                break
            tmux.keys("j")
            tmux.keys("Right")
            time.sleep(0.3)
            shown = tmux.screen()
        assert "two\\nlines.txt" in shown
        assert not any(line.strip() == "lines.txt" for line in shown.splitlines())
        # the bell: the build ends while the Build tab is watched
        tmux.keys("4")
        tmux.wait_for("WAITING")
        assert tmux.run("display", "-p", "-t", tmux.name, "#{window_bell_flag}").stdout.strip() == "0"
        Container.update(state="built").where(Container.project == odd_project.id).execute()
        Project.update(status="built").where(Project.id == odd_project.id).execute()
        tmux.wait_for("finished")
        deadline = time.monotonic() + 10
        while tmux.run("display", "-p", "-t", tmux.name, "#{window_bell_flag}").stdout.strip() != "1":
            assert time.monotonic() < deadline, "no bell"
            time.sleep(0.2)
    finally:
        tmux.kill()
