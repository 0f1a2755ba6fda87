"""The first screen: every project with its status, counts and build progress."""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header, Input, Static

from ptolemy_tui.screens import fmt
from ptolemy_tui.services import views
from ptolemy_tui.screens.base import (ConfirmScreen, FilterInput, KeyBar, NavTable, Polling, call_service,
                                      reset_table, sync_table)

COLUMNS = [("name", "Project"), ("status", "Status"), ("files", "Files"), ("bytes", "Bytes"),
           ("containers", "Cont."), ("cars", "CARs"), ("progress", "Progress"), ("workers", "Wkr")]
COLUMN_KEYS = [key for key, _ in COLUMNS]


class ProjectsTable(Polling, NavTable):
    # enter on the table opens the project: say so in the footer (DataTable's own enter binding is hidden)
    BINDINGS = [Binding("enter", "select_cursor", "Open")]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rows_by_name: dict[str, views.ProjectRow] = {}
        self.filter_text = ""
        self.loaded = False
        self.last_rows: list[views.ProjectRow] = []

    def on_mount(self) -> None:
        self.sort_columns = [("name", "name"), ("status", "status"), ("files", "files"), ("bytes", "bytes"),
                             ("containers", "containers"), ("built", "built"), ("workers", "workers")]
        for key, label in COLUMNS:
            self.add_column(label, key=key)
        self.start_polling()

    def fetch(self) -> list[views.ProjectRow]:
        return views.project_rows()

    def show(self, rows: list[views.ProjectRow]) -> None:
        self.last_rows = rows
        self.rows_by_name = {r.name: r for r in rows}
        self.app.project_names = sorted(self.rows_by_name)
        needle = self.filter_text.lower()
        shown = [r for r in rows if not needle or needle in r.name.lower() or needle in r.status]
        sync_table(self, [(r.name, r) for r in shown], COLUMN_KEYS, self.cells)
        self.apply_sort()
        self.loaded = True
        empty = self.screen.query_one("#empty", Static)
        empty.display = not rows

    @staticmethod
    def cells(r: views.ProjectRow) -> list[Any]:
        status = fmt.state(r.status)
        if r.paused:
            status.append(" paused", style="yellow")
        fraction = (r.built / r.containers) if r.containers else None
        cars = f"{r.built}/{r.containers}" + (f" ✗{r.failed}" if r.failed else "")
        workers = Text(str(r.workers or ""))
        if r.lost_workers:
            workers.append(f" ✗{r.lost_workers} lost", style="bold red")
        return [Text(r.name, style="bold"), status, fmt.count(r.files), fmt.size(r.bytes),
                fmt.count(r.containers), cars, fmt.bar_pct(fraction, 10), workers]


class ProjectsScreen(Screen):
    """Projects: new, edit, delete, open."""

    BINDINGS = [
        Binding("enter", "open", "Open", priority=False),
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("d", "delete", "Delete"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("o", "sort", "Sort", show=False),
        Binding("O", "sort_reverse", "Reverse sort", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("No projects yet. Press [b]n[/b] to create one, or run [b]ptolemy demo[/b] for a sample.",
                     id="empty")
        yield ProjectsTable(id="projects")
        yield FilterInput(placeholder="filter projects (esc clears)", id="filter")
        yield KeyBar()

    def on_mount(self) -> None:
        self.title = "Ptolemy"
        self.sub_title = "projects"
        self.query_one("#filter").display = False
        self.query_one("#empty").display = False
        self.query_one(ProjectsTable).focus()

    def on_screen_resume(self) -> None:
        table = self.query_one(ProjectsTable)
        table.poll_now()
        table.focus()

    @property
    def table(self) -> ProjectsTable:
        return self.query_one(ProjectsTable)

    def selected(self) -> views.ProjectRow | None:
        name = self.table.selected_key()
        return self.table.rows_by_name.get(name) if name else None

    def on_data_table_row_selected(self, event: NavTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        row = self.selected()
        if row is None:
            self.notify("no project selected: press n to create one")
            return
        from ptolemy_tui.screens.project import ProjectScreen

        self.app.push_screen(ProjectScreen(row.id, row.name, row.target_name))

    def action_new(self) -> None:
        from ptolemy_tui.screens.form import ProjectForm

        self.app.push_screen(ProjectForm(), self._after_form)

    def action_edit(self) -> None:
        row = self.selected()
        if row is None:
            self.notify("no project selected")
            return
        from ptolemy_tui.screens.form import ProjectForm

        self.app.push_screen(ProjectForm(row.id), self._after_form)

    def _after_form(self, name: str | None) -> None:
        if name:
            self.table.poll_now()

    def action_delete(self) -> None:
        row = self.selected()
        if row is None:
            self.notify("no project selected")
            return
        name = row.name

        def answered(yes: bool | None) -> None:
            if yes:
                call_service(self, "projects", "delete", name, success=f"deleted project {name}",
                             done=lambda _: self.table.poll_now())

        self.app.push_screen(ConfirmScreen(
            f"Delete project [b]{name}[/b] and all its records?\nCAR files already in staging stay on disk.",
            yes="Delete"), answered)

    def action_filter(self) -> None:
        box = self.query_one("#filter", FilterInput)
        box.display = True
        box.screen.set_focus(box)  # now, not after the keys already typed (focus() waits a turn)

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.table.filter_text = event.value
        reset_table(self.table)
        self.table.show(self.table.last_rows)

    @on(Input.Submitted, "#filter")
    def filter_done(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.display = False
        self.set_focus(self.table)

    def action_sort(self) -> None:
        self.notify(self.table.cycle_sort(), timeout=2)

    def action_sort_reverse(self) -> None:
        self.notify(self.table.flip_sort(), timeout=2)

    def action_refresh(self) -> None:
        self.table.poll_now()
