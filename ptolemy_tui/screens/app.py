"""The Ptolemy TUI application: the projects screen first, a project's tabs on enter, help on `?`, the command
palette (ctrl+p) with every action of the current screen, and `q` asking what happens to running builds."""
from __future__ import annotations

import gc
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Header
from textual.widgets._header import HeaderTitle

import ptolemy_tui
from ptolemy_tui.settings import current
from ptolemy_tui.services import session, views
from ptolemy_tui.screens.base import MIN_SIZE, HelpScreen, QuitScreen, TooSmallScreen, binding_rows, call_service


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




def notice_mode_from_env() -> str:
    """PTOLEMY_NOTIFY: off (default), bell, osc9 or osc777; anything else is off."""
    return current().notify


def notice_sequence(mode: str, text: str) -> str:
    clean = "".join(ch for ch in text if ch.isprintable() and ch not in ";\x1b\x07")[:200]
    if mode == "bell":
        return "\a"
    if mode == "osc9":
        return f"\x1b]9;{clean}\x07"
    if mode == "osc777":
        return f"\x1b]777;notify;Ptolemy;{clean}\x07"
    return ""


def short_store(label: str) -> str:
    """sqlite:////home/me/x.db -> sqlite ~/x.db; postgresql://u:****@h:5432/db -> pg u@h:5432/db (the password
    is masked before it gets here and dropped here)."""
    if label.startswith("sqlite:///"):
        path = label[len("sqlite:///"):]
        home = os.path.expanduser("~")
        if path.startswith(home + "/"):
            path = "~" + path[len(home):]
        return f"sqlite {path}"
    for scheme in ("postgresql://", "postgres://"):
        if label.startswith(scheme):
            rest = label[len(scheme):]
            if "@" in rest:
                auth, host = rest.rsplit("@", 1)
                rest = f"{auth.split(':', 1)[0]}@{host}"
            return f"pg {rest}"
    return label


# Longer titles for the command palette than the footer has room for (by action).
PALETTE_TITLES = {
    "retry": "Retry failed containers",
    "build_mode('blitz')": "Start a blitz build (all containers in parallel)",
    "build_mode('serial')": "Start a serial build (one container at a time)",
    "build_mode('inline')": "Start an inline build (no CARs written; ptolemy serve regenerates them)",
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
    "copy('path')": "Copy the CAR's path",
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
                 store_label: str = "", watch_tty: bool | None = None, notify_mode: str | None = None):
        super().__init__()
        self.notify_mode = notify_mode if notify_mode is not None else notice_mode_from_env()
        self.open_project = project
        self.open_tab = tab
        self.autorun = autorun
        self.store_label = store_label
        self.paused_refresh = False
        self.notices: list[str] = []  # the terminal notices sent (tests read them in headless runs)
        # Scan and containerize jobs this TUI started (services/jobs.JobHandle, by project id) and what to do
        # when each ends; they run detached, so quitting leaves them running.
        self.jobs: dict[int, tuple[Any, Callable[[bool], None] | None]] = {}
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
        self.set_interval(0.5, self._check_jobs)

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
            self.exit(return_code=0)

    # Jobs -----------------------------------------------------------------------------------------------------

    def watch_job(self, handle: Any, after: Callable[[bool], None] | None = None) -> None:
        self.jobs[handle.project_id] = (handle, after)

    def _check_jobs(self) -> None:
        """A finished job: its one line (the scan's or pack's summary, or the error) as a notification."""
        for project_id, (handle, after) in list(self.jobs.items()):
            if handle.finished():
                del self.jobs[project_id]
                call_service(self, "jobs", "outcome", handle,
                             done=lambda result, after=after: self._job_ended(result, after))

    def _job_ended(self, result: tuple[bool, str], after: Callable[[bool], None] | None) -> None:
        succeeded, text = result
        self.notify(text, severity="information" if succeeded else "error", timeout=6 if succeeded else 10)
        if after is not None:
            after(succeeded)

    @work(thread=True, exit_on_error=False, group="open")
    def _open_named(self, name: str, tab: str | None = None, then: str | None = None) -> None:
        try:
            info = session.call(views.project_ref, name)
        except Exception as exc:  # noqa: BLE001
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.call_from_thread(self._push_project, *info, tab=tab, then=then)

    def _push_project(self, project_id: int, name: str, target_name: str, tab: str | None = None,
                      then: str | None = None) -> None:
        from ptolemy_tui.screens.project import ProjectScreen

        screen = ProjectScreen(project_id, name, target_name, tab=tab or self.open_tab, autorun=self.autorun)
        self.push_screen(screen)
        if then:  # the palette's "Build project X": the same action as its key on the project's screen
            screen.call_after_refresh(lambda: self.run_action(then, screen))

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
        for name in self.project_names:  # the pipeline from anywhere: "build" finds these on the Projects screen
            yield SystemCommand(f"Build project {name}", "start its build and watch the Build tab",
                                partial(self._open_named, name, tab="overview", then="build"))
            yield SystemCommand(f"Scan project {name}", "scan its target and watch the Scan tree",
                                partial(self._open_named, name, tab="tree", then="scan"))
            yield SystemCommand(f"Pack project {name}", "containerize it and watch the Containers tab",
                                partial(self._open_named, name, tab="containers", then="containerize"))
        yield SystemCommand("Pause refresh" if not self.paused_refresh else "Resume refresh",
                            "stop or restart polling the store (z)", self.action_toggle_refresh)
        yield from super().get_system_commands(screen)

    async def _run_bound(self, action: str, node: Any) -> None:
        await self.run_action(action, node)

    def action_toggle_refresh(self) -> None:
        self.paused_refresh = not self.paused_refresh
        self.notify("refresh paused (z resumes)" if self.paused_refresh else "refresh resumed")
        self.refresh_headers()

    # The header: which store is open, and whether refreshing is paused ---------------------------------------

    def format_title(self, title: str, sub_title: str) -> Content:
        parts: list[Any] = [title]
        if sub_title:
            parts += [(" — ", "dim"), sub_title]
        if self.store_label:
            parts += [("  ·  ", "dim"), (short_store(self.store_label), "dim")]
        if self.paused_refresh:
            parts += ["  ", ("⏸ REFRESH PAUSED (z)", "bold reverse")]
        return Content.assemble(*parts)

    def refresh_headers(self) -> None:
        for screen in self.screen_stack:
            for header in screen.query(Header):
                for title in header.query(HeaderTitle):
                    title.update(header.format_title())

    # Build finished or failed: a notification, and the bell or a desktop notice when configured -------------

    def build_transition(self, before: Any, after: Any) -> None:
        if before.status != "building" or after.status == "building":
            return
        failed = after.states.get("failed", 0)
        built = after.states.get("built", 0)
        if after.status == "failed" or failed:
            text = f"build of {after.name} failed: {failed} container(s) failed, {built} built"
        elif after.status == "built":
            text = f"build of {after.name} finished: {built} CARs"
        else:
            text = f"build of {after.name} stopped ({after.status}): {built} of {after.containers} built"
        self.notify(text, severity="error" if failed else "information", timeout=15)
        self.terminal_notice(text)

    def terminal_notice(self, text: str) -> None:
        """The configured signal: `bell` (BEL), `osc9` (iTerm2, WezTerm, Windows Terminal), `osc777` (VTE,
        foot, kitty); `off` (the default) does nothing."""
        sequence = notice_sequence(self.notify_mode, text)
        if sequence and self._driver is not None and not self.is_headless:
            self._driver.write(sequence)
        self.notices.append(sequence)

    # Quitting -----------------------------------------------------------------------------------------------

    def action_request_quit(self) -> None:
        self._quit_check()

    @work(thread=True, exclusive=True, exit_on_error=False, group="quit")
    def _quit_check(self) -> None:
        try:
            running = session.call(views.busy_workers)
        except Exception:  # noqa: BLE001 - a broken store must not stop the operator leaving
            running = {}
        self.call_from_thread(self._quit_answer, running)

    def _quit_answer(self, running: dict[str, int]) -> None:
        if not running:
            self.exit()
            return

        def chosen(choice: str | None) -> None:
            self.quit_choice = choice
            if choice == "leave":
                self.exit()
            elif choice == "stop":
                self._stop_builds(sorted(running))

        self.push_screen(QuitScreen(running), chosen)

    @work(thread=True, exit_on_error=False, group="quit-stop")
    def _stop_builds(self, names: list[str]) -> None:
        from ptolemy_tui.services import build

        failures = []
        for name in names:
            try:
                session.call(build.cancel, name)
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{name}: {exc}")
        self.call_from_thread(self._stopped, failures)

    def _stopped(self, failures: list[str]) -> None:
        if failures:
            self.notify("could not stop: " + "; ".join(failures), severity="error", timeout=10)
            return
        self.exit()
