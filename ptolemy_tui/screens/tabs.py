"""The panes of the project screen: overview, scan tree, containers, build, CARs, log.

Each pane polls the store only while it is the visible tab of the current screen.
"""
from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import RichLog, Static, Tree
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

from ptolemy_tui.core.sizes import format_size
from ptolemy_tui.core.states import ProjectStatus
from ptolemy_tui.screens import fmt
from ptolemy_tui.services import session, views
from ptolemy_tui.screens.base import FilterInput, NavTable, NavTree, Polling, reset_table, sync_table
from ptolemy_tui.screens.transfers import TransfersPanel, rows_for as transfer_rows

# The key that takes the next step, by project status (the step's text is for reading, not for lookups).
NEXT_KEYS = {
    ProjectStatus.DEFINED: "s", ProjectStatus.SCANNED: "c", ProjectStatus.CONTAINERIZED: "b",
    ProjectStatus.BUILDING: "4", ProjectStatus.BUILT: "5 then m", ProjectStatus.FAILED: "s / c / f",
    ProjectStatus.SCANNING: "2", ProjectStatus.CONTAINERIZING: "3",
}


class Pane(Polling):
    """A pane polls only while its tab is the active one."""

    tab_id = ""

    def poll_visible(self) -> bool:
        screen = self.screen
        if not (self.is_mounted and screen.is_current):
            return False
        return getattr(screen, "active_tab", None) == self.tab_id

    @property
    def project_id(self) -> int:
        return self.screen.project_id


# Overview ---------------------------------------------------------------------------------------------------

class OverviewPane(Pane, VerticalScroll):
    tab_id = "overview"

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="overview-body")

    def on_mount(self) -> None:
        self._pid = self.screen.project_id
        self.start_polling()

    def fetch(self) -> views.OverviewView:
        return views.overview(self._pid)

    def show(self, view: views.OverviewView) -> None:
        self.doc = doc = view.project
        counts = view.counts
        self.screen.status = doc["status"]
        t = Text()

        def row(key: str, value: Any, style: str = "") -> None:
            t.append(f"{key:<15}", style="bold")
            if isinstance(value, Text):
                t.append_text(value)
            else:
                t.append(str(value), style=style)
            t.append("\n")

        status = fmt.state(doc["status"])
        if view.paused:
            status.append("  (paused)", style="yellow")
        if doc.get("message"):
            status.append(f"  {doc['message']}", style="italic")
        row("status", status)
        row("target", doc["target_dir"])
        row("staging", doc["staging_dir"])
        row("CAR size", f"{format_size(doc['car_size'])} → {format_size(doc['padded_piece_size'])} piece, "
                        f"{doc['piece_utilisation']:.1%} used")
        row("shard size", format_size(doc["shard_size"]))
        row("load type", f"{doc['load_type']}, {doc['workers']} workers, encryption {doc['encryption']}")
        row("staging budget", fmt.size(doc["staging_budget"]) if doc["staging_budget"] else "free space of the disk")
        t.append("\n")
        row("files", f"{fmt.count(counts.files)} ({fmt.size(counts.bytes)})")
        n = counts.containers
        row("containers", f"{fmt.count(n)}: {counts.built} built, {counts.building} building, "
                          f"{counts.pending} pending, {counts.failed} failed")
        progress = fmt.bar_pct(counts.built / n if n else None, 20)
        row("built", progress)
        row("CARs", fmt.count(counts.cars))
        if view.dataset_root:
            row("dataset root", view.dataset_root, "bold")
        elif doc["status"] == "built":
            row("dataset root", "none yet: press g for the dataset DAG CAR", "dim")
        scan = view.scan
        if scan:
            row("last scan", f"{scan['state']}: {fmt.count(scan['entries'])} entries, {fmt.size(scan['bytes'])}, "
                             f"{scan['errors']} errors, {scan['skipped']} skipped")
        lost = sum(1 for w in view.workers if w.lost)
        live = len(view.workers) - lost
        if view.workers:
            line = Text(f"{live} live")
            if lost:
                line.append(f", {lost} lost (no heartbeat)", style="bold red")
            row("workers", line)
        t.append("\n")
        step = doc.get("next_step")
        if step:
            t.append("next step      ", style="bold")
            t.append(step, style="bold reverse")
            key = NEXT_KEYS.get(doc["status"])
            if doc["status"] == ProjectStatus.FAILED:  # the action that fixes this failure, not a guess
                key = "s (rescan)" if "rescan" in (doc.get("message") or "") else "f (retry failed)"
            if key:
                t.append(f"  press {key}", style="bold")
            t.append(f"   ({doc['next_command']})", style="dim")
        self.query_one("#overview-body", Static).update(t)


# Scan tree --------------------------------------------------------------------------------------------------

def node_label(child: views.TreeNode, parent_bytes: int) -> Text:
    fraction = child.bytes / parent_bytes if parent_bytes else 0.0
    t = Text()
    t.append_text(fmt.bar(fraction, 8))
    t.append(f" {fmt.size(child.bytes):>10}", style="bold" if child.kind == "dir" else "")
    t.append(f" {fmt.count(child.files) if child.kind == 'dir' else '':>8}  ", style="dim")
    file_kind = child.file_kind
    if child.kind == "dir":
        t.append(child.name + "/", style="bold")
    elif file_kind == "removed":
        t.append(child.name, style="strike dim")
        t.append("  (removed since the last scan)", style="dim")
    else:
        t.append(child.name, style="italic" if file_kind == "symlink" else "")
    if file_kind == "symlink":
        t.append(f" → {child.link_target or '?'}", style="dim")
    elif file_kind == "special":
        t.append("  (special file, skipped)", style="yellow")
    if child.error:
        t.append(f"  ✗ {child.error}", style="red")
    return t


class TreePane(Pane, Vertical):
    """ncdu-like: one chunk of children per expand, loaded off the loop; sorted by size or name; live while a
    scan runs."""

    tab_id = "tree"
    poll_interval = 1.0
    CHUNK = views.PAGE

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sort = "size"
        self.root_id: int | None = None
        self.scan_state: str | None = None
        self.scan_id: int | None = None
        self.nodes_by_key: dict[tuple[str, int], TreeNode] = {}
        self.reopen: set[int] = set()
        self.filter_text = ""
        self.loads = 0  # chunks loaded, for tests

    def compose(self) -> ComposeResult:
        yield Static("", id="scan-line")
        tree: NavTree = NavTree("(not scanned yet: press s to scan)", id="scan-tree")
        tree.show_root = True
        tree.guide_depth = 2
        yield tree
        yield Static("", id="scan-errors")
        yield FilterInput(placeholder="filter names in each open directory (esc clears)", id="tree-filter")

    def on_mount(self) -> None:
        self._pid = self.screen.project_id
        self.query_one("#scan-errors").display = False
        self.query_one("#tree-filter").display = False
        self.start_polling()

    @property
    def tree(self) -> NavTree:
        return self.query_one("#scan-tree", NavTree)

    def fetch(self) -> views.TreeView:
        return views.tree_view(self._pid, 50)

    def show(self, doc: views.TreeView) -> None:
        scan = doc.scan
        line = Text()
        if scan:
            line.append(f"scan {scan.state}", style="bold cyan" if scan.state == "running" else "bold")
            line.append(f"  {fmt.count(scan.files)} files  {fmt.size(scan.bytes)}  "
                        f"{scan.errors} errors  {scan.skipped} skipped")
            if scan.state == "running":
                line.append(f"  {scan.rate:,.0f}/s  {scan.current_dir[-40:]}", style="dim")
        else:
            line.append("not scanned yet: press s to scan", style="dim")
        line.append(f"   sort: {self.sort} (o)", style="dim")
        if self.filter_text:
            line.append(f"   filter: {self.filter_text}", style="yellow")
        self.query_one("#scan-line", Static).update(line)
        root = doc.root
        state = scan.state if scan else None
        finished = (self.scan_state == "running" and state != "running") or (scan and scan.id != self.scan_id
                                                                             and self.scan_id is not None)
        self.scan_state, self.scan_id = state, scan.id if scan else None
        if root is None:
            return
        if self.root_id != root.id or finished:
            self.reload(dataclasses.asdict(root))
        else:
            self.tree.root.data.update(bytes=root.bytes, files=root.files)
            self.tree.root.set_label(self.root_label(self.tree.root.data))
            if state == "running":
                self.refresh_expanded()
        errors = doc.problems
        box = self.query_one("#scan-errors", Static)
        box.display = bool(errors)
        if errors:
            t = Text(f"{len(errors)} unreadable or skipped:\n", style="bold red")
            for e in errors[:4]:
                t.append(f"  {e.path}: {e.reason}\n", style="red")
            box.update(t)

    def root_label(self, root: dict[str, Any]) -> Text:
        t = Text(f"{fmt.size(root['bytes'])} in {fmt.count(root['files'])} files  ", style="bold")
        t.append(self.screen.target_name or "/", style="bold")
        return t

    def reload(self, root: dict[str, Any] | None = None) -> None:
        tree = self.tree
        if root is None:
            root = dict(tree.root.data or {})
            if not root:
                return
        self.root_id = root["id"]
        # directories open now are opened again as they reappear (sorting must not fold the tree up)
        self.reopen = {n.data["id"] for n in self.nodes_by_key.values()
                       if n.data and n.data.get("kind") == "dir" and n.is_expanded}
        tree.clear()
        self.nodes_by_key = {}
        tree.root.data = {"kind": "dir", "id": root["id"], "bytes": root["bytes"], "files": root["files"],
                          "loaded": 0, "done": False, "name": root.get("name", "")}
        tree.root.set_label(self.root_label(root))
        tree.root.expand()
        self.load_chunk(tree.root)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded) -> None:
        event.stop()
        node = event.node
        if node.data and node.data.get("kind") == "dir" and node.data.get("loaded") == 0 and not node.data.get("loading"):
            self.load_chunk(node)

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        node = event.node
        if node.data and node.data.get("kind") == "more":
            event.stop()
            parent = node.parent
            node.remove()
            if parent is not None:
                self.load_chunk(parent)

    def load_chunk(self, node: TreeNode) -> None:
        info = node.data
        if info.get("loading"):
            return
        info["loading"] = True
        self._chunk_worker(node, info["id"], self.sort, info["loaded"], self.filter_text, info.get("cursor"))

    @work(thread=True, exit_on_error=False, group="tree-chunk")
    def _chunk_worker(self, node: TreeNode, directory_id: int, sort: str, offset: int, text: str,
                      after: tuple | None = None) -> None:
        try:
            rows = session.call(views.tree_children, self._pid, directory_id, sort, offset, self.CHUNK, text,
                                after if offset else None)
        except Exception as exc:  # noqa: BLE001
            rows = exc
        try:
            self.app.call_from_thread(self._add_chunk, node, sort, offset, rows, text)
        except RuntimeError:
            pass

    def _add_chunk(self, node: TreeNode, sort: str, offset: int, rows: Any, text: str = "") -> None:
        info = node.data
        info["loading"] = False
        if isinstance(rows, Exception):
            self.notify(f"cannot read the tree: {rows}", severity="error")
            return
        if sort != self.sort or text != self.filter_text or node.tree is not self.tree or info.get("loaded") != offset:
            return  # the tree was re-sorted or reloaded meanwhile
        parent_bytes = info.get("bytes") or 0
        for child in rows:
            self._add_child(node, child, parent_bytes)
        info["loaded"] = offset + len(rows)
        if rows:
            info["cursor"] = rows[-1].cursor  # the next chunk seeks past it (keyset), never OFFSET deep
        if len(rows) >= self.CHUNK:
            node.add_leaf(Text(f"… more (enter loads {self.CHUNK} more)", style="italic dim"),
                          data={"kind": "more"})
        self.loads += 1

    def _add_child(self, node: TreeNode, child: views.TreeNode, parent_bytes: int) -> None:
        label = node_label(child, parent_bytes)
        key = (child.kind, child.id)
        if child.kind == "dir":
            empty = child.entries == 0
            new = node.add(label, data={**dataclasses.asdict(child), "loaded": 0}, allow_expand=not empty)
            if child.id in self.reopen and not empty:
                new.expand()  # open again after a re-sort or reload
        else:
            new = node.add_leaf(label, data=dataclasses.asdict(child))
        self.nodes_by_key[key] = new

    def refresh_expanded(self) -> None:
        """While a scan runs: re-read the first chunk of each open directory, update labels, add newcomers."""
        nodes = [n for n in [self.tree.root, *self.nodes_by_key.values()]
                 if n.data and n.data.get("kind") == "dir" and n.is_expanded and n.data.get("loaded")][:8]
        if nodes:
            self._live_worker([(n, n.data["id"]) for n in nodes], self.sort, self.filter_text)

    @work(thread=True, exclusive=True, exit_on_error=False, group="tree-live")
    def _live_worker(self, targets: list[tuple[TreeNode, int]], sort: str, text: str) -> None:
        results = []
        for node, directory_id in targets:
            try:
                results.append((node, session.call(views.tree_children, self._pid, directory_id, sort, 0,
                                                   self.CHUNK, text)))
            except Exception:  # noqa: BLE001
                continue
        if not get_current_worker().is_cancelled:
            try:
                self.app.call_from_thread(self._apply_live, results, sort, text)
            except RuntimeError:
                pass

    def _apply_live(self, results: list[tuple[TreeNode, list[views.TreeNode]]], sort: str, text: str = "") -> None:
        if sort != self.sort or text != self.filter_text:
            return
        for node, rows in results:
            if node.tree is not self.tree or not node.data:
                continue
            parent_bytes = node.data.get("bytes") or 0
            for child in rows:
                existing = self.nodes_by_key.get((child.kind, child.id))
                if existing is not None:
                    existing.data.update(bytes=child.bytes, files=child.files)
                    existing.set_label(node_label(child, parent_bytes))
                elif len(node.children) < self.CHUNK:
                    self._add_child(node, child, parent_bytes)
                    node.data["loaded"] += 1

    def start_filter(self) -> None:
        box = self.query_one("#tree-filter", FilterInput)
        box.display = True
        box.screen.set_focus(box)  # now, not after the keys already typed (focus() waits a turn)

    @on(FilterInput.Changed, "#tree-filter")
    def filter_changed(self, event: FilterInput.Changed) -> None:
        event.stop()
        self.filter_text = event.value
        self.reload()

    @on(FilterInput.Submitted, "#tree-filter")
    def filter_done(self, event: FilterInput.Submitted) -> None:
        event.stop()
        if not event.value:
            event.input.display = False
        self.screen.set_focus(self.tree)

    def toggle_sort(self) -> None:
        self.sort = "name" if self.sort == "size" else "size"
        self.notify(f"sorted by {self.sort}")
        self.reload()
        self.poll_now()


# Containers -------------------------------------------------------------------------------------------------

CONTAINER_COLUMNS = [("seq", "#"), ("state", "State"), ("fill", "Fill"), ("size", "CAR size"), ("data", "Data"),
                     ("items", "Items"), ("shards", "Shards"), ("attempts", "Try"), ("error", "Error")]


class ContainersPane(Pane, Vertical):
    tab_id = "containers"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.filter_text = ""
        self.last: views.ContainersView | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="containers-summary")
        yield NavTable(id="containers-table")
        yield FilterInput(placeholder="filter: a state (built, failed…), an error word, or a container number",
                          id="containers-filter")

    def on_mount(self) -> None:
        self._pid = self.screen.project_id
        table = self.query_one("#containers-table", NavTable)
        table.sort_columns = [("#", "seq"), ("state", "state"), ("fill", "fill"), ("CAR size", "predicted_size"),
                              ("data", "data_bytes"), ("items", "items"), ("shards", "shards"), ("tries", "attempts"),
                              ("error", "error")]
        for key, label in CONTAINER_COLUMNS:
            table.add_column(label, key=key)
        self.query_one("#containers-filter").display = False
        self.start_polling()

    def fetch(self) -> views.ContainersView:
        return views.containers(self._pid, self.filter_text)

    def show(self, doc: views.ContainersView) -> None:
        self.last = doc
        states = doc.states
        t = Text()
        t.append(f"{fmt.count(doc.count)} containers", style="bold")
        t.append(f" of {fmt.size(doc.car_size)}  overall fill ")
        t.append_text(fmt.bar_pct(doc.fill, 12))
        t.append("   " + "  ".join(f"{s} {n}" for s, n in sorted(states.items())), style="dim")
        if self.filter_text:
            t.append(f"   filter: {self.filter_text} ({len(doc.rows)} shown)", style="yellow")
        t.append(f"   {self.query_one('#containers-table', NavTable).sort_label()}", style="dim")
        if not doc.count:
            t.append("\nno containers yet: scan (s) then containerize (c)", style="dim")
        self.query_one("#containers-summary", Static).update(t)
        table = self.query_one("#containers-table", NavTable)
        sync_table(table, [(str(r.id), r) for r in doc.rows], [k for k, _ in CONTAINER_COLUMNS], self.cells)
        table.apply_sort()

    @staticmethod
    def cells(r: views.ContainerRow) -> list[Any]:
        return [str(r.seq), fmt.state(r.state), fmt.bar_pct(r.fill, 10), fmt.size(r.predicted_size),
                fmt.size(r.data_bytes), fmt.count(r.items), fmt.count(r.shards), str(r.attempts),
                (r.error or "")[:60]]

    @on(NavTable.RowSelected, "#containers-table")
    def open_items(self, event: NavTable.RowSelected) -> None:
        event.stop()
        from ptolemy_tui.screens.items import ContainerItemsScreen

        self.app.push_screen(ContainerItemsScreen(int(event.row_key.value)))

    def start_filter(self) -> None:
        box = self.query_one("#containers-filter", FilterInput)
        box.display = True
        box.screen.set_focus(box)  # now, not after the keys already typed (focus() waits a turn)

    @on(FilterInput.Changed, "#containers-filter")
    def filter_changed(self, event: FilterInput.Changed) -> None:
        event.stop()
        self.filter_text = event.value
        reset_table(self.query_one("#containers-table", NavTable))
        self._poll_busy = False
        self.poll_now()

    @on(FilterInput.Submitted, "#containers-filter")
    def filter_done(self, event: FilterInput.Submitted) -> None:
        event.stop()
        if not event.value:
            event.input.display = False
        self.screen.set_focus(self.query_one("#containers-table"))


# Build ------------------------------------------------------------------------------------------------------

WORKER_COLUMNS = [("worker", "Host:pid"), ("state", "State"), ("container", "#"), ("progress", "Progress"),
                  ("mbs", "MiB/s"), ("eta", "ETA"), ("rss", "RSS"), ("cpu", "CPU%")]
HISTORY = 300  # samples (about five minutes at one a second)


def waiting_banner(view: views.BuildView, width: int) -> str:
    """One line that fits `width`: how many workers wait, and the binding constraint with its numbers (free space
    or the budget), in the worker's own words, shortened only as a last resort."""
    n = len(view.waiting)
    head = f"⏸ WAITING FOR STAGING: {n} worker{'s' if n != 1 else ''}"
    reason = view.wait_reason
    if not reason and view.staging:
        reason = f"{fmt.size(view.staging.free)} free"
    line = f"{head}; {reason}" if reason else head
    if len(line) > width:
        line = f"⏸ WAITING: {reason}" if reason else head
    if len(line) > width:
        line = line[:max(width - 1, 1)] + "…"
    return line


class BuildPane(Pane, Vertical):
    tab_id = "build"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rates: collections.deque[float] = collections.deque(maxlen=HISTORY)
        self.staging_used: collections.deque[float] = collections.deque(maxlen=HISTORY)
        self.last: views.BuildView | None = None
        self.seen_workers: dict[str, set[str]] = {}  # host:pid -> states shown (this session)

    def compose(self) -> ComposeResult:
        yield Static("", id="build-summary")
        yield Static("", id="build-waiting")
        with Horizontal(classes="gauge-row"):
            yield Static("", id="staging-gauge", classes="gauge-label")
            yield Static("", id="staging-spark", classes="spark")
        with Horizontal(classes="gauge-row"):
            yield Static("", id="rate-label", classes="gauge-label")
            yield Static("", id="rate-spark", classes="spark")
        yield NavTable(id="workers-table")
        yield TransfersPanel(id="transfers")

    def on_mount(self) -> None:
        self._pid = self.screen.project_id
        table = self.query_one("#workers-table", NavTable)
        for key, label in WORKER_COLUMNS:
            table.add_column(label, key=key)
        self.query_one("#build-waiting").display = False
        self.start_polling()

    def fetch(self) -> views.BuildView:
        self.transfers = transfer_rows(self._pid, time.time())  # the serving panel's rows, shown with the view
        return views.build_view(self._pid)

    def show(self, doc: views.BuildView) -> None:
        before = self.last
        self.last = doc
        if before is None or before.paused != doc.paused:
            self.screen.refresh_bindings()
        if before is not None:
            self.app.build_transition(before, doc)  # the bell / desktop notice, when configured
        self.screen.status = doc.status
        total, done, rate = doc.bytes_total, doc.bytes_done, doc.rate
        states = doc.states
        n = doc.containers
        t = Text()
        t.append(f"{doc.status}", style="bold")
        if doc.paused:
            t.append(" PAUSED", style="bold yellow reverse")
        t.append(f"  {doc.load_type}  ")
        t.append_text(fmt.bar_pct(done / total if total else None, 16))
        t.append(f"  {fmt.size(done)} / {fmt.size(total)}  {fmt.rate(rate)}  ETA {fmt.eta(total - done, rate)}")
        if doc.source:
            t.append(f"\nreading {doc.source}", style="dim")
        t.append(f"\ncontainers {n}: {states.get('built', 0)} built, {states.get('building', 0)} building, "
                 f"{states.get('pending', 0)} pending, {states.get('failed', 0)} failed", style="dim")
        if doc.started_at:
            end = doc.finished_at or time.time()
            t.append(f"\nelapsed {fmt.duration(end - doc.started_at)}", style="dim")
            t.append(f"  started {fmt.stamp(doc.started_at)}", style="dim")
            if doc.finished_at:
                t.append(f"  finished {fmt.stamp(doc.finished_at)}", style="bold green")
        if doc.lost:
            t.append(f"\n✗ {doc.lost} worker(s) lost: no heartbeat for {views.LOST_AFTER:.0f} s or the process is "
                     f"gone; their containers are requeued when the lease ends, or now with b", style="bold red")
        live = [w for w in doc.workers if not w.lost]
        if not live and states.get("building", 0) == 0 and states.get("pending", 0):
            t.append("   (no live workers: b blitz, l serial)", style="dim")
        if doc.message:
            t.append(f"\n{doc.message}", style="italic")
        self.query_one("#build-summary", Static).update(t)
        waiting = self.query_one("#build-waiting", Static)
        waiting.display = bool(doc.waiting)
        if doc.waiting:
            width = (waiting.size.width or self.size.width or 80) - 2
            waiting.update(waiting_banner(doc, width))
        staging = doc.staging
        gauge = Text("staging ", style="bold")
        if doc.load_type == "inline":  # nothing is written to staging: the plans live in the store
            gauge.append("inline: no CARs written, staging need near zero; `ptolemy serve` regenerates them")
        elif staging and staging.total:
            fraction = staging.used / staging.total
            gauge.append_text(fmt.bar(fraction, 10, style="red" if fraction > 0.9 else "cyan"))
            gauge.append(f" {fmt.size(staging.used)}/{fmt.size(staging.total)} used · "
                         f"{fmt.size(staging.free)} free")
            self.staging_used.append(fraction * 100)
        else:
            gauge.append("-")
        self.rates.append(rate or 0.0)
        self.query_one("#staging-gauge", Static).update(gauge)
        self.query_one("#rate-label", Static).update(Text.assemble(("throughput ", "bold"), fmt.rate(rate),
                                                                   (f" (peak {fmt.rate(max(self.rates))})"
                                                                    if max(self.rates) else "", "dim")))
        self.draw_sparks()
        rows = []
        for w in doc.workers:
            self.seen_workers.setdefault(w.key, set()).add(w.state)
            fraction = w.bytes_done / w.bytes_total if w.bytes_total else None
            state = Text(f"lost ({fmt.duration(time.time() - w.heartbeat)} silent)", style="bold red") if w.lost \
                else fmt.state(w.state)
            rows.append((w.key, [w.key, state, str(w.container or "-"), fmt.bar_pct(fraction, 10),
                                 fmt.mibps(w.rate), fmt.eta(w.bytes_total - w.bytes_done, w.rate),
                                 fmt.size(w.rss), f"{w.cpu or 0:.0f}"]))
        sync_table(self.query_one("#workers-table", NavTable), rows, [k for k, _ in WORKER_COLUMNS])
        self.query_one("#transfers", TransfersPanel).show(getattr(self, "transfers", None) or [])

    def draw_sparks(self) -> None:
        """Staging use on 0-100 %, throughput on 0-peak: the last minutes, newest on the right."""
        staging = self.query_one("#staging-spark", Static)
        staging.update(Text(fmt.spark(self.staging_used, staging.size.width or 20, hi=100.0), style="cyan"))
        rates = self.query_one("#rate-spark", Static)
        rates.update(Text(fmt.spark(self.rates, rates.size.width or 20), style="green"))

    def on_resize(self) -> None:
        self.call_after_refresh(self.draw_sparks)


# CARs -------------------------------------------------------------------------------------------------------

CAR_COLUMNS = [("seq", "#"), ("piece", "Piece CID"), ("payload", "Payload CID"), ("size", "CAR size"),
               ("piece_size", "Piece"), ("path", "Path")]


class CarsPane(Pane, Vertical):
    tab_id = "cars"
    poll_interval = 2.0

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.filter_text = ""
        self.rows_by_key: dict[str, views.CarRow] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="cars-summary")
        yield NavTable(id="cars-table")
        yield Static("", id="car-detail")
        yield FilterInput(placeholder="filter by CID or path (esc clears)", id="cars-filter")

    def on_mount(self) -> None:
        self._pid = self.screen.project_id
        table = self.query_one("#cars-table", NavTable)
        table.sort_columns = [("#", "seq"), ("piece CID", "piece_cid"), ("payload CID", "payload_cid"),
                              ("CAR size", "car_size"), ("built", "built_at"), ("path", "path")]
        for key, label in CAR_COLUMNS:
            table.add_column(label, key=key)
        self.query_one("#cars-filter").display = False
        self.start_polling()

    def fetch(self) -> views.CarsView:
        return views.cars(self._pid, self.filter_text)

    def show(self, doc: views.CarsView) -> None:
        self.rows_by_key = {str(r.id): r for r in doc.rows}
        t = Text()
        t.append(f"{fmt.count(doc.count)} CARs", style="bold")
        t.append(f", {fmt.size(doc.bytes)}   y/Y copy piece/payload CID   "
                 f"{self.query_one('#cars-table', NavTable).sort_label()}", style="dim")
        if self.filter_text:
            t.append(f"   filter: {self.filter_text}", style="yellow")
        self.query_one("#cars-summary", Static).update(t)
        table = self.query_one("#cars-table", NavTable)
        sync_table(table, [(str(r.id), r) for r in doc.rows], [k for k, _ in CAR_COLUMNS], self.cells)
        table.apply_sort()
        self.show_detail()

    @staticmethod
    def cells(r: views.CarRow) -> list[Any]:
        piece = Text(r.piece_cid, style="red strike" if r.stale else "")
        path: Any = r.path or Text("inline (ptolemy serve / car export)", style="dim")
        if r.location == "moved":  # gone from staging: moved to deal storage, not broken
            path = Text.assemble(("moved ", "yellow"), (r.path, "dim"))
        return [str(r.seq), piece, r.payload_cid, fmt.size(r.car_size), format_size(r.piece_size), path]

    def selected(self) -> views.CarRow | None:
        key = self.query_one("#cars-table", NavTable).selected_key()
        return self.rows_by_key.get(key) if key else None

    @on(NavTable.RowHighlighted, "#cars-table")
    def highlighted(self, event: NavTable.RowHighlighted) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        """The highlighted CAR whole, wrapped rather than cut: both CIDs, the path, where it is, size and origin."""
        row = self.selected()
        box = self.query_one("#car-detail", Static)
        if row is None:
            box.update("")
            return
        t = Text()
        t.append(f"container {row.seq}  ", style="bold")
        t.append(f"{fmt.size(row.car_size)} in a {format_size(row.piece_size)} piece, built {fmt.stamp(row.built_at)}"
                 f" on {row.host or '?'}\n", style="dim")
        t.append("piece   ", style="bold")
        t.append(row.piece_cid + "\n")
        t.append("payload ", style="bold")
        t.append(row.payload_cid + "\n")
        t.append("path    ", style="bold")
        t.append(row.path or "inline (no file: ptolemy serve / car export)")
        if row.location == "moved":
            t.append("  (moved off staging: ptolemy verify --where DIR)", style="yellow")
        if row.stale:
            t.append(f"\nSTALE: {row.stale}", style="red")
        t.append("\ny piece · Y payload · P path: copy", style="dim")
        box.update(t)

    def start_filter(self) -> None:
        box = self.query_one("#cars-filter", FilterInput)
        box.display = True
        box.screen.set_focus(box)  # now, not after the keys already typed (focus() waits a turn)

    @on(FilterInput.Changed, "#cars-filter")
    def filter_changed(self, event: FilterInput.Changed) -> None:
        event.stop()
        self.filter_text = event.value
        reset_table(self.query_one("#cars-table", NavTable))
        self._poll_busy = False
        self.poll_now()

    @on(FilterInput.Submitted, "#cars-filter")
    def filter_done(self, event: FilterInput.Submitted) -> None:
        event.stop()
        if not event.value:
            event.input.display = False
        self.screen.set_focus(self.query_one("#cars-table"))


# Log --------------------------------------------------------------------------------------------------------

LEVEL_STYLES = {"error": "bold red", "warning": "yellow", "debug": "dim"}


LEVELS = ("debug", "info", "warning", "error")


class LogPane(Pane, Vertical):
    """The project's events, newest last and followed; `/` filters by text, `L` raises the minimum level."""

    tab_id = "log"
    KEEP = 5000

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.last_id = 0
        self.lines = 0
        self.entries: collections.deque[views.EventRow] = collections.deque(maxlen=self.KEEP)
        self.filter_text = ""
        self.min_level = "debug"

    def compose(self) -> ComposeResult:
        yield Static("", id="log-filter-line")
        yield RichLog(max_lines=self.KEEP, wrap=True, auto_scroll=True, id="log-view")
        yield FilterInput(placeholder="filter the log (esc clears)", id="log-filter")

    def on_mount(self) -> None:
        self._pid = self.screen.project_id
        self.query_one("#log-filter").display = False
        self.query_one("#log-filter-line").display = False
        self.start_polling()

    def fetch(self) -> list[views.EventRow]:
        return views.events_after(self._pid, self.last_id, 500)

    def shown(self, e: views.EventRow) -> bool:
        level = e.level if e.level in LEVELS else "info"
        if LEVELS.index(level) < LEVELS.index(self.min_level):
            return False
        return not self.filter_text or self.filter_text.lower() in e.text.lower()

    def show(self, rows: list[views.EventRow]) -> None:
        view = self.query_one("#log-view", RichLog)
        # follow the newest line unless the operator scrolled up to read
        view.auto_scroll = view.scroll_offset.y >= view.max_scroll_y - 1
        for e in rows:
            self.entries.append(e)
            self.last_id = max(self.last_id, e.id)
            if self.shown(e):
                self.write(view, e)

    def write(self, view: RichLog, e: views.EventRow) -> None:
        line = Text(f"{fmt.clock(e.time)} ", style="dim")
        line.append(f"{e.level:<7} ", style=LEVEL_STYLES.get(e.level, "green"))
        line.append(e.text, style=LEVEL_STYLES.get(e.level, ""))
        view.write(line)
        self.lines += 1

    def redraw(self) -> None:
        view = self.query_one("#log-view", RichLog)
        view.clear()
        self.lines = 0
        for e in self.entries:
            if self.shown(e):
                self.write(view, e)
        label = self.query_one("#log-filter-line", Static)
        parts = []
        if self.min_level != "debug":
            parts.append(f"level ≥ {self.min_level} (L)")
        if self.filter_text:
            parts.append(f"filter: {self.filter_text} (/)")
        label.update(Text("   ".join(parts) + f"   {self.lines} shown", style="yellow"))
        label.display = bool(parts)

    def cycle_level(self) -> str:
        self.min_level = LEVELS[(LEVELS.index(self.min_level) + 1) % len(LEVELS)]
        self.redraw()
        return f"log: {self.min_level} and above"

    def start_filter(self) -> None:
        box = self.query_one("#log-filter", FilterInput)
        box.display = True
        box.screen.set_focus(box)  # now, not after the keys already typed (focus() waits a turn)

    @on(FilterInput.Changed, "#log-filter")
    def filter_changed(self, event: FilterInput.Changed) -> None:
        event.stop()
        self.filter_text = event.value
        self.redraw()

    @on(FilterInput.Submitted, "#log-filter")
    def filter_done(self, event: FilterInput.Submitted) -> None:
        event.stop()
        if not event.value:
            event.input.display = False
        self.screen.set_focus(self.query_one("#log-view"))
