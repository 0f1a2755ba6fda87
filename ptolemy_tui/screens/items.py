"""One container's items: whole files and shard ranges, paged from the store."""
from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header, Static

from ptolemy_tui.screens import fmt
from ptolemy_tui.services import views
from ptolemy_tui.screens.base import FilterInput, KeyBar, NavTable, Polling

PAGE = 1000
COLUMNS = [("seq", "#"), ("car_path", "Path in CAR"), ("source", "Source"), ("range", "Range"),
           ("length", "Length"), ("shard", "Shard")]


class ItemsTable(Polling, NavTable):
    poll_interval = 0  # read once per page

    def __init__(self, container_id: int, **kwargs):
        super().__init__(**kwargs)
        self.container_id = container_id
        self.page_offset = 0
        self.total = 0
        self.filter_text = ""
        self.page_after: int | None = None  # filtered: the last seq before this page (keyset paging)
        self.pages_before: list[int | None] = []  # filtered: page_after of each earlier page, for `p`
        self.last_seq: int | None = None

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)
        self.start_polling()

    def fetch(self) -> views.ItemsView:
        return views.container_items(self.container_id, self.page_offset, PAGE, self.filter_text, self.page_after)

    def show(self, doc: views.ItemsView) -> None:
        self.total = doc.total
        c = doc.container
        head = Text()
        head.append(f"container {c.seq}", style="bold")
        head.append(f"  {fmt.state(c.state)}  {fmt.size(c.predicted_size)}  {fmt.count(c.items)} items, "
                    f"{fmt.count(c.shards)} shards")
        last = min(self.page_offset + PAGE, self.total)
        head.append(f"   rows {self.page_offset + 1 if self.total else 0}-{last} of {fmt.count(self.total)}", style="dim")
        if self.total > PAGE:
            head.append("  (n/p page)", style="dim")
        if self.filter_text:
            head.append(f"   filter: {self.filter_text} ({fmt.count(self.total)} match)", style="yellow")
        if c.error:
            head.append(f"\n✗ {c.error}", style="red")
        self.screen.query_one("#items-head", Static).update(head)
        self.clear()
        self.last_seq = doc.rows[-1].seq if doc.rows else None
        for r in doc.rows:
            shard = "" if r.shard_index is None else str(r.shard_index)
            rng = f"{fmt.count(r.offset)}-{fmt.count(r.offset + r.length)}" if r.shard_index is not None else "whole"
            self.add_row(str(r.seq), r.car_path, r.source, rng, fmt.size(r.length), shard, key=str(r.seq))


class ContainerItemsScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("n", "page(1)", "Next page"),
        Binding("p", "page(-1)", "Prev page"),
        Binding("slash", "filter", "Filter", key_display="/"),
    ]

    def __init__(self, container_id: int):
        super().__init__()
        self.container_id = container_id

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading…", id="items-head")
        yield ItemsTable(self.container_id, id="items-table")
        yield FilterInput(placeholder="filter by path in the CAR (esc clears)", id="items-filter")
        yield KeyBar()

    def on_mount(self) -> None:
        self.sub_title = "container items"
        self.query_one("#items-filter").display = False
        self.query_one(ItemsTable).focus()

    def action_filter(self) -> None:
        box = self.query_one("#items-filter", FilterInput)
        box.display = True
        box.screen.set_focus(box)  # now, not after the keys already typed (focus() waits a turn)

    @on(FilterInput.Changed, "#items-filter")
    def filter_changed(self, event: FilterInput.Changed) -> None:
        event.stop()
        table = self.query_one(ItemsTable)
        table.filter_text, table.page_offset = event.value, 0
        table.page_after, table.pages_before = None, []
        table._poll_busy = False
        table.poll_now()

    @on(FilterInput.Submitted, "#items-filter")
    def filter_done(self, event: FilterInput.Submitted) -> None:
        event.stop()
        if not event.value:
            event.input.display = False
        self.set_focus(self.query_one(ItemsTable))

    def action_back(self) -> None:
        box = self.query_one("#items-filter", FilterInput)
        if box.has_focus:
            return
        self.app.pop_screen()

    def action_page(self, step: int) -> None:
        table = self.query_one(ItemsTable)
        offset = table.page_offset + step * PAGE
        if not 0 <= offset < max(table.total, 1):
            return
        if step > 0:
            table.pages_before.append(table.page_after)
            table.page_after = table.last_seq
        else:
            table.page_after = table.pages_before.pop() if table.pages_before else None
        table.page_offset = offset
        table.poll_now()
