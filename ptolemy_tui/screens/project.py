"""One project, with tabs: overview, scan tree, containers, build, CARs, log. Every action of every tab is a
binding on this screen, enabled only on the tabs where it applies, so the footer shows what works here."""
from __future__ import annotations

import os
from typing import Any, Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header, TabbedContent, TabPane

from ptolemy_tui.screens.base import ConfirmScreen, KeyBar, NavTable, ProjectRef, call_service
from ptolemy_tui.screens.tabs import BuildPane, CarsPane, ContainersPane, LogPane, OverviewPane, TreePane

TABS = [("overview", "1 Overview"), ("tree", "2 Scan tree"), ("containers", "3 Containers"), ("build", "4 Build"),
        ("cars", "5 CARs"), ("log", "6 Log")]

# action -> tabs where it is offered (None: every tab)
ACTION_TABS: dict[str, tuple[str, ...] | None] = {
    "edit": ("overview",),
    "scan": ("overview", "tree"),
    "containerize": ("overview", "containers"),
    "build": ("overview",),
    "build_mode": ("build",),
    "pause": ("build",),
    "resume": ("build",),
    "cancel": ("build",),
    "cancel_step": ("overview", "tree"),
    "retry": ("overview", "build", "containers"),
    "add_worker": ("build",),
    "sort": ("tree", "containers", "cars"),
    "sort_reverse": ("containers", "cars"),
    "reload_tree": ("tree",),
    "copy": ("cars",),
    "manifest": ("cars",),
    "manifest_here": ("overview",),
    "verify": ("cars",),
    "filter": ("tree", "containers", "cars", "log"),
    "log_level": ("log",),
    "dataset_dag": ("overview", "cars"),
}


_STARTING = {"scan": "scanning {name}…", "containerize": "packing {name}…", "verify": "verifying CARs…",
             "dag": "writing the dataset DAG CAR…"}


class ProjectScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back", show=False),
        # the description without the number the key already shows (help read "1  1 Overview")
        *[Binding(str(n), f"tab('{tab}')", label.split(" ", 1)[1], show=False)
          for n, (tab, label) in enumerate(TABS, 1)],
        Binding("s", "scan", "Scan"),
        Binding("c", "containerize", "Pack"),
        Binding("b", "build", "Build"),
        Binding("b", "build_mode('blitz')", "Blitz"),
        Binding("l", "build_mode('serial')", "Serial"),
        Binding("i", "build_mode('inline')", "Inline", show=False),
        Binding("p", "pause", "Pause"),
        Binding("r", "resume", "Resume"),
        Binding("x", "cancel", "Cancel"),
        Binding("x", "cancel_step", "Cancel scan or build", show=False),
        Binding("f", "retry", "Retry"),
        Binding("plus", "add_worker", "Add worker", key_display="+"),
        Binding("o", "sort", "Sort"),
        Binding("O", "sort_reverse", "Reverse sort", show=False),
        Binding("R", "reload_tree", "Reload", show=False),
        Binding("y", "copy('piece_cid')", "Copy piece CID"),
        Binding("Y", "copy('payload_cid')", "Copy payload CID", show=False),
        Binding("P", "copy('path')", "Copy CAR path", show=False),
        Binding("m", "manifest", "Manifest"),
        Binding("m", "manifest_here", "Export manifest", show=False),
        Binding("v", "verify", "Verify"),
        Binding("g", "dataset_dag", "Dataset DAG", show=False),  # offered on the overview once built
        Binding("e", "edit", "Edit"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("L", "log_level", "Level"),
    ]

    def __init__(self, project_id: int, name: str, target_name: str = "", *, tab: str = "overview",
                 autorun: bool = False):
        super().__init__()
        self.autorun = autorun
        self.project_id = project_id
        self.project_name = name
        self.target_name = target_name
        self.initial_tab = tab
        self.status = ""
        self._starting = False

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial=self.initial_tab, id="tabs"):
            with TabPane(TABS[0][1], id="overview"):
                yield OverviewPane(id="overview-pane")
            with TabPane(TABS[1][1], id="tree"):
                yield TreePane(id="tree-pane")
            with TabPane(TABS[2][1], id="containers"):
                yield ContainersPane(id="containers-pane")
            with TabPane(TABS[3][1], id="build"):
                yield BuildPane(id="build-pane")
            with TabPane(TABS[4][1], id="cars"):
                yield CarsPane(id="cars-pane")
            with TabPane(TABS[5][1], id="log"):
                yield LogPane(id="log-pane")
        yield KeyBar()

    def on_mount(self) -> None:
        self.title = "Ptolemy"
        self.sub_title = self.project_name
        if self.autorun:
            self.call_after_refresh(self.action_scan)

    @property
    def active_tab(self) -> str:
        try:
            return self.query_one("#tabs", TabbedContent).active
        except Exception:  # noqa: BLE001 - during mount
            return ""

    def pane(self, tab: str):
        return self.query_one(f"#{tab}-pane")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        tabs = ACTION_TABS.get(action)
        if tabs is None:
            return True
        if self.active_tab not in tabs:
            return False
        if action in ("pause", "resume"):  # offer the one that applies
            last = self.pane("build").last
            return bool(last and last.paused) == (action == "resume")
        return True

    @on(TabbedContent.TabActivated)
    def tab_changed(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        pane = self.pane(self.active_tab)
        pane.poll_now()
        self.call_after_refresh(self._focus_pane)

    def _focus_pane(self) -> None:
        targets = {"overview": None, "tree": "#scan-tree", "containers": "#containers-table",
                   "build": "#workers-table", "cars": "#cars-table", "log": "#log-view"}
        selector = targets.get(self.active_tab)
        if selector:
            self.query_one(selector).focus()

    def on_screen_resume(self) -> None:
        self.refresh_bindings()
        if self.active_tab:
            self.pane(self.active_tab).poll_now()

    # Navigation ---------------------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    def action_edit(self) -> None:
        from ptolemy_tui.screens.form import ProjectForm

        def saved(name: str | None) -> None:
            if name:
                self.pane(self.active_tab).poll_now()

        self.app.push_screen(ProjectForm(self.project_id), saved)

    def action_filter(self) -> None:
        self.pane(self.active_tab).start_filter()

    def action_sort(self) -> None:
        if self.active_tab == "tree":
            self.pane("tree").toggle_sort()
            return
        pane = self.pane(self.active_tab)
        table = pane.query_one(NavTable)
        self.notify(table.cycle_sort(), timeout=2)
        pane.poll_now()

    def action_log_level(self) -> None:
        self.notify(self.pane("log").cycle_level(), timeout=2)

    def action_sort_reverse(self) -> None:
        pane = self.pane(self.active_tab)
        self.notify(pane.query_one(NavTable).flip_sort(), timeout=2)
        pane.poll_now()

    def action_reload_tree(self) -> None:
        self.pane("tree").reload()

    # Pipeline steps -----------------------------------------------------------------------------------------

    def _refresh(self, _result: Any = None) -> None:
        if self.is_mounted and self.active_tab:
            self.pane(self.active_tab).poll_now()

    def action_scan(self) -> None:
        self._start_job("scan", then=self._autorun_pack if self.autorun else None)
        self.action_tab("tree") if self.active_tab == "overview" else None

    @property
    def job_running(self) -> bool:
        """A job this TUI started for the project (scan, pack, verify, dag) is still running in its own process,
        or being started."""
        return self.project_id in self.app.jobs or self._starting

    def _start_job(self, kind: str, *, reset: bool = False, then: Callable[[], None] | None = None) -> None:
        """Scan, pack, verify or write the dataset DAG in a detached process (it survives quitting); the app
        reports its end."""
        if self.job_running:
            running = self.app.jobs.get(self.project_id)
            self.notify(f"{running[0].kind if running else 'a job'} is still running here: wait for it")
            return
        self._starting = True  # until the service answers: a second key must not start a second job

        def started() -> None:
            self._starting = False

        def after(succeeded: bool) -> None:
            self._refresh()
            if succeeded and then is not None and self.is_mounted:
                then()

        self.notify(_STARTING[kind].format(name=self.project_name))
        call_service(self, "jobs", "start", ProjectRef(self.project_id), kind, reset=reset,
                     done=lambda handle: self.app.watch_job(handle, after), always=started)

    def _autorun_pack(self) -> None:
        """The demo's walk-through: after the scan, pack; after packing, a blitz build."""
        self.action_tab("containers")

        def packed() -> None:
            if self.autorun:
                self.autorun = False
                self.set_timer(1.5, lambda: self._start_build("blitz", switch=True))

        self.set_timer(1.5, lambda: self._start_job("containerize", then=packed))

    def action_containerize(self) -> None:
        """Pack; when the project is packed already, ask before packing again from scratch."""

        def decide(status: str) -> None:
            self.status = status
            if status in ("containerized", "built", "building", "failed"):
                self.app.push_screen(ConfirmScreen("Pack again from scratch? Pending containers are replaced; "
                                                   "built CARs are kept.", yes="Re-pack"),
                                     lambda yes: self._start_job("containerize", reset=True) if yes else None)
            else:
                self._start_job("containerize")

        call_service(self, "views", "project_status", self.project_id, done=decide)

    def action_build(self) -> None:
        self._start_build(None)

    def action_build_mode(self, mode: str) -> None:
        self._start_build(mode)

    def _start_build(self, mode: str | None, switch: bool = False, force: bool = False) -> None:
        def refused(exc: Exception) -> bool:
            """Over the staging space or budget: the CLI's --force, offered here as a question."""
            text = str(exc)
            if force or "--force" not in text:
                return False
            reason = text.split(": ", 1)[-1].split("; ")[0]
            self.app.push_screen(ConfirmScreen(f"{reason}.\nBuild anyway (as --force)? Or press l for a serial "
                                               f"build, or raise the staging budget (e).", yes="Build anyway"),
                                 lambda yes: self._start_build(mode, force=True) if yes else None)
            return True

        call_service(self, "build", "start_build", ProjectRef(self.project_id), mode=mode, force=force,
                     done=self._refresh, failed=refused,
                     success=lambda pids: f"build started: {len(pids or [])} worker(s)"
                     + (f" ({mode})" if mode else "") + (" (forced)" if force else ""))
        if self.active_tab == "overview" or switch:
            self.action_tab("build")

    def action_pause(self) -> None:
        call_service(self, "build", "pause", ProjectRef(self.project_id), done=self._refresh,
                     success="paused: workers finish their current container, then wait")

    def action_resume(self) -> None:
        call_service(self, "build", "resume", ProjectRef(self.project_id), done=self._refresh, success="resumed")

    def action_cancel(self) -> None:
        """A running scan or containerize (started here or anywhere) is asked to stop; else the build, after
        a question."""

        def build_cancelled(yes: bool | None) -> None:
            if yes:
                call_service(self, "build", "cancel", ProjectRef(self.project_id), done=self._refresh,
                             success="build cancelled")

        def answered(kind: str | None) -> None:
            if kind:
                self.notify(f"cancelling the {kind}")
                self._refresh()
                return
            self.app.push_screen(ConfirmScreen(f"Cancel the build of {self.project_name}? Workers stop; "
                                               "unfinished CARs are removed.", yes="Cancel build",
                                               no="Keep building"), build_cancelled)

        call_service(self, "jobs", "cancel", ProjectRef(self.project_id), done=answered)

    def action_cancel_step(self) -> None:
        self.action_cancel()

    def action_manifest_here(self) -> None:
        self.action_manifest()

    def action_add_worker(self) -> None:
        call_service(self, "build", "add_workers", ProjectRef(self.project_id), 1, done=self._refresh,
                     success=lambda pids: f"added {len(pids)} worker(s)")

    def action_retry(self) -> None:
        call_service(self, "build", "retry", ProjectRef(self.project_id), done=self._refresh,
                     success=lambda n: f"{n} failed container(s) queued again")

    # CARs ---------------------------------------------------------------------------------------------------

    def action_copy(self, field: str) -> None:
        row = self.pane("cars").selected()
        if row is None:
            self.notify("no CAR selected")
            return
        value = getattr(row, field)
        self.app.copy_to_clipboard(value)
        self.notify(f"copied {field.replace('_', ' ')}: {value}", timeout=6)

    def action_manifest(self) -> None:
        name = self.project_name

        def write(project) -> str:
            from ptolemy_tui.services import results

            content = results.manifest(project, "csv")
            if isinstance(content, (list, tuple)):
                content = "\n".join(str(line) for line in content)
            if isinstance(content, str) and os.path.exists(content) and "\n" not in content:
                return content
            path = os.path.join(project.staging_dir, f"{name}-manifest.csv")
            with open(path, "w" if isinstance(content, str) else "wb") as fh:
                fh.write(content)
            return path

        call_service(self, "manifest", write, ProjectRef(self.project_id),
                     success=lambda path: f"manifest written: {path}")

    def action_dataset_dag(self) -> None:
        """After a build: the dataset root DAG and its DAG CAR (`ptolemy dag`)."""
        self._start_job("dag")

    def action_verify(self) -> None:
        self._start_job("verify")
