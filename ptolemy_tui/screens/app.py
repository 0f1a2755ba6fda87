"""The Ptolemy TUI application: the projects screen first, a project's tabs on enter, help on `?`, the command
palette (ctrl+p) with every action of the current screen, and `q` asking what happens to running builds."""
from __future__ import annotations

import gc
import os
import sys
import threading
from functools import partial
from pathlib import Path
from typing import Any, Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

import ptolemy_tui
from ptolemy_tui.screens import data
from ptolemy_tui.screens.base import MIN_SIZE, HelpScreen, QuitScreen, TooSmallScreen, binding_rows


def _stylesheet() -> str:
    """ptolemy.tcss: inside the package in a wheel, at the repository root in a checkout."""
    package_dir = Path(ptolemy_tui.__file__).resolve().parent
    for candidate in (package_dir / "ptolemy.tcss", package_dir.parent / "ptolemy.tcss"):
        if candidate.is_file():
            return str(candidate)
    return str(package_dir / "ptolemy.tcss")


CSS_FILE = _stylesheet()


def tune_gc() -> None:
    """Full garbage collections of a big widget tree stop the loop for 100-250 ms (measured with 5,000 table
    rows): move everything alive at start-up out of the collector's sight and collect far less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


# Longer titles for the command palette than the footer has room for (by action).
PALETTE_TITLES = {
    "retry": "Retry failed containers",
    "build_mode('blitz')": "Start a blitz build (all containers in parallel)",
    "build_mode('serial')": "Start a serial build (one container at a time)",
    "build": "Start the build",
    "pause": "Pause the build",
    "resume": "Resume the build",
    "cancel": "Cancel the build",
    "cancel_step": "Cancel the scan or the build",
    "scan": "Scan the target tree",
    "containerize": "Pack into containers (containerize)",
    "manifest": "Export the manifest (CSV in the staging directory)",
    "manifest_here": "Export the manifest (CSV in the staging directory)",
    "verify": "Verify every CAR",
    "copy('piece_cid')": "Copy the piece CID",
    "copy('payload_cid')": "Copy the payload CID",
    "sort": "Sort the tree by size or name",
    "edit": "Edit the project",
    "new": "New project",
    "delete": "Delete the project",
    "filter": "Filter the table",
    "request_quit": "Quit",
    "help": "Help: every key of this screen",
}


class PtolemyApp(App):
    CSS_PATH = CSS_FILE
    TITLE = "Ptolemy"
    BINDINGS = [
        Binding("q", "request_quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+p", "command_palette", "Commands", show=False),
        Binding("z", "toggle_refresh", "Pause refresh", show=False),
    ]

    def __init__(self, *, project: str | None = None, tab: str = "overview", autorun: bool = False,
                 store_label: str = "", watch_tty: bool | None = None):
        super().__init__()
        self.open_project = project
        self.open_tab = tab
        self.autorun = autorun
        self.store_label = store_label
        self.paused_refresh = False
        self.running_steps: set[threading.Event] = set()
        self.project_names: list[str] = []
        self.quit_choice: str | None = None
        self.watch_tty = sys.stdin.isatty() if watch_tty is None else watch_tty

    def on_mount(self) -> None:
        from ptolemy_tui.screens.projects import ProjectsScreen

        tune_gc()

        self.push_screen(ProjectsScreen())
        if self.open_project:
            self._open_named(self.open_project)
        if self.watch_tty:
            self.set_interval(2.0, self._check_tty)

    def on_resize(self, event) -> None:
        small = event.size.width < MIN_SIZE[0] or event.size.height < MIN_SIZE[1]
        showing = isinstance(self.screen, TooSmallScreen)
        if small and not showing:
            self.push_screen(TooSmallScreen())
        elif not small and showing:
            self.pop_screen()

    def _check_tty(self) -> None:
        """A dropped SSH session leaves no terminal: leave builds running and exit instead of spinning."""
        try:
            alive = os.isatty(sys.__stdin__.fileno())
        except (ValueError, OSError, AttributeError):
            alive = False
        if not alive:
            self._stop_steps()
            self.exit(return_code=0)

    @work(thread=True, exit_on_error=False, group="open")
    def _open_named(self, name: str) -> None:
        from ptolemy_tui.services import projects

        try:
            p = data.db_call(projects.get, name)
            info = (p.id, p.name, os.path.basename(p.target_dir.rstrip("/")) or p.target_dir)
        except Exception as exc:  # noqa: BLE001
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.call_from_thread(self._push_project, *info)

    def _push_project(self, project_id: int, name: str, target_name: str) -> None:
        from ptolemy_tui.screens.project import ProjectScreen

        self.push_screen(ProjectScreen(project_id, name, target_name, tab=self.open_tab, autorun=self.autorun))

    # Help and command palette -------------------------------------------------------------------------------

    def action_help(self) -> None:
        screen = self.screen
        if isinstance(screen, HelpScreen):
            return
        title = screen.sub_title or screen.__class__.__name__
        self.push_screen(HelpScreen(title, binding_rows(screen.active_bindings.values()), self.store_label))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        seen = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not active.enabled or binding.action in ("command_palette",) or not binding.description:
                continue
            if binding.action in ("cursor_down", "cursor_up", "scroll_top", "scroll_bottom"):
                continue
            ident = (binding.action, id(active.node))
            if ident in seen:
                continue
            seen.add(ident)
            keys = binding.key_display or key
            title = PALETTE_TITLES.get(binding.action, binding.description)
            yield SystemCommand(title, f"key: {keys}", partial(self._run_bound, binding.action, active.node))
        for name in self.project_names:
            yield SystemCommand(f"Open project {name}", "go to the project's tabs", partial(self._open_named, name))
        yield SystemCommand("Pause refresh" if not self.paused_refresh else "Resume refresh",
                            "stop or restart polling the store (z)", self.action_toggle_refresh)
        yield from super().get_system_commands(screen)

    async def _run_bound(self, action: str, node: Any) -> None:
        await self.run_action(action, node)

    def action_toggle_refresh(self) -> None:
        self.paused_refresh = not self.paused_refresh
        self.notify("refresh paused (z resumes)" if self.paused_refresh else "refresh resumed")

    # Quitting -----------------------------------------------------------------------------------------------

    def action_request_quit(self) -> None:
        self._quit_check()

    @work(thread=True, exclusive=True, exit_on_error=False, group="quit")
    def _quit_check(self) -> None:
        try:
            running = data.db_call(data.any_live_workers)
        except Exception:  # noqa: BLE001 - a broken store must not stop the operator leaving
            running = {}
        self.call_from_thread(self._quit_answer, running)

    def _quit_answer(self, running: dict[str, int]) -> None:
        if not running:
            self._stop_steps()
            self.exit()
            return

        def chosen(choice: str | None) -> None:
            self.quit_choice = choice
            if choice == "leave":
                self._stop_steps()
                self.exit()
            elif choice == "stop":
                self._stop_builds(sorted(running))

        self.push_screen(QuitScreen(running), chosen)

    @work(thread=True, exit_on_error=False, group="quit-stop")
    def _stop_builds(self, names: list[str]) -> None:
        from ptolemy_tui.services import projects

        cancel = data.service_function("build", "cancel")
        failures = []
        for name in names:
            if cancel is None:
                failures.append(f"{name}: build.cancel is not available yet")
                continue
            try:
                data.db_call(lambda: cancel(projects.get(name)))
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{name}: {exc}")
        self.call_from_thread(self._stopped, failures)

    def _stopped(self, failures: list[str]) -> None:
        if failures:
            self.notify("could not stop: " + "; ".join(failures), severity="error", timeout=10)
            return
        self._stop_steps()
        self.exit()

    def _stop_steps(self) -> None:
        for event in list(self.running_steps):
            event.set()
