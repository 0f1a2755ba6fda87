"""Pieces every screen uses: polling the store off the event loop, tables updated by row key, service calls in
thread workers, and the small modals (confirm, help, quit)."""
from __future__ import annotations

import importlib
import logging
from typing import Any, Callable, Iterable

from rich.style import Style
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static, Tree
from textual.worker import get_current_worker

from ptolemy_tui.errors import PtolemyError
from ptolemy_tui.services import session, views

log = logging.getLogger("ptolemy.tui")

ADD_CHUNK = 100  # rows added per step: 5,000 containers appear without blocking the loop


class Polling:
    """Mixin for a widget that shows store data: a thread worker fetches, the event loop renders, a timer re-arms.

    Subclasses implement fetch() (runs in a thread: read only plain attributes) and show(data) (event loop).
    Polling skips while the widget is not visible (another tab, another screen, a modal on top).
    """

    poll_interval: float = 1.0
    _poll_busy: bool = False
    _poll_started: bool = False
    polls: int = 0  # completed refreshes, for tests

    def start_polling(self) -> None:
        if not self._poll_started:
            self._poll_started = True
            self.set_timer(0.01, self._poll_tick)

    def poll_visible(self) -> bool:
        screen = self.screen  # type: ignore[attr-defined]
        return bool(self.is_mounted and screen.is_current and self.display)  # type: ignore[attr-defined]

    def _poll_tick(self) -> None:
        try:
            if not self._poll_busy and self.poll_visible() and not self.app.paused_refresh:  # type: ignore[attr-defined]
                self.poll_now()
        finally:
            if self.poll_interval:
                self.set_timer(self.poll_interval, self._poll_tick)  # type: ignore[attr-defined]

    def poll_now(self) -> None:
        if self._poll_busy:
            return
        self._poll_busy = True
        self._poll_worker()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll_worker(self) -> None:
        try:
            result: Any = session.call(self.fetch)
        except Exception as exc:  # noqa: BLE001 - shown in the view, never fatal
            result = exc
        worker = get_current_worker()
        try:
            self.app.call_from_thread(self._poll_deliver, result, worker.is_cancelled)  # type: ignore[attr-defined]
        except RuntimeError:
            pass  # the app is closing

    def _poll_deliver(self, result: Any, cancelled: bool) -> None:
        self._poll_busy = False
        if cancelled or not self.is_mounted:  # type: ignore[attr-defined]
            return
        if isinstance(result, Exception):
            self.show_error(result)
        else:
            try:
                self.show(result)
                self._last_error = ""
            except Exception as exc:  # noqa: BLE001 - a view that cannot render says so; the app lives on
                log.exception("rendering %s failed", type(self).__name__)
                self.show_error(exc)
        self.polls += 1

    def fetch(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def show(self, result: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    _last_error: str = ""

    def show_error(self, exc: Exception) -> None:
        log.error("refresh failed: %r", exc)
        message = f"refresh failed: {exc}"
        if message != self._last_error:  # once per distinct problem, not every second
            self._last_error = message
            self.notify(message, severity="error", timeout=6)  # type: ignore[attr-defined]


class NavTable(DataTable):
    """DataTable with vim keys and a row cursor."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(*args, **kwargs)

    def _update_dimensions(self, new_rows) -> None:
        # Column widths grow on idle after rows land; rows rendered in between would keep their old, truncated
        # rendering in DataTable's row cache (seen at 80x24), so drop the caches once widths are settled.
        before = [column.content_width for column in self.ordered_columns]
        super()._update_dimensions(new_rows)
        if before != [column.content_width for column in self.ordered_columns]:
            self._clear_caches()

    # Column sorting: (label, attribute of the row's read model); the first column must be unique per row.
    sort_columns: list[tuple[str, str]] = []
    sort_at: int = -1  # -1: the natural order (as the store lists them)
    sort_reverse: bool = False

    def cycle_sort(self) -> str:
        """Sort by the next column (round the list); returns what the view shows."""
        if not self.sort_columns:
            return ""
        self.sort_at = (self.sort_at + 1) % len(self.sort_columns)
        self.apply_sort()
        return self.sort_label()

    def flip_sort(self) -> str:
        self.sort_reverse = not self.sort_reverse
        self.apply_sort()
        return self.sort_label()

    def sort_label(self) -> str:
        if self.sort_at < 0:
            return "o sorts"
        return f"sort: {self.sort_columns[self.sort_at][0]} {'↓' if self.sort_reverse else '↑'} (o/O)"

    def apply_sort(self) -> None:
        if self.sort_at < 0 or not self.row_count:
            return
        attr = self.sort_columns[self.sort_at][1]
        first = self.ordered_columns[0].key
        raws = self.__dict__.get("_raw_rows", {})
        by_first = {str(self.get_cell(key, first)): raw for key, raw in raws.items() if key in self.rows}

        def sort_key(cell: Any) -> tuple:
            value = getattr(by_first.get(str(cell)), attr, None)
            if isinstance(value, str):
                value = value.lower()
            return (value is None, value if value is not None else 0)

        self.sort(first, key=sort_key, reverse=self.sort_reverse)

    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - empty or moving table
            return None
        return key.value


class NavTree(Tree):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("l", "expand", "Expand", show=False),
        Binding("right", "expand", "Expand", show=False),
        Binding("h", "collapse_or_parent", "Parent", show=False),
        Binding("left", "collapse_or_parent", "Parent", show=False),
    ]

    def action_expand(self) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand and not node.is_expanded:
            node.expand()

    def action_collapse_or_parent(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded and node.allow_expand:
            node.collapse()
        elif node.parent is not None:
            self.move_cursor(node.parent)


def sync_table(table: DataTable, rows: list[tuple[str, Any]], columns: list[str],
               render: Callable[[Any], list[Any]] | None = None) -> None:
    """Bring the table to `rows` by row key: remove what left, update what changed, append what is new.

    rows are (key, raw) where raw is plain comparable data; render(raw) makes the cells, only for rows whose
    raw data changed (so a 5,000-row table that did not change costs one comparison per row). New rows are
    added in chunks, one chunk per frame, so a large table never blocks the loop.
    """
    render = render or (lambda raw: list(raw))
    cache: dict[str, Any] = table.__dict__.setdefault("_raw_rows", {})
    wanted = {key for key, _ in rows}
    if len(wanted) < len(cache):
        for key in [k for k in cache if k not in wanted]:
            cache.pop(key, None)
            if key in table.rows:
                table.remove_row(key)
    new: list[tuple[str, Any]] = []
    for key, raw in rows:
        if key in cache:
            if cache[key] != raw:
                cache[key] = raw
                if key in table.rows:
                    for column, value in zip(columns, render(raw)):
                        table.update_cell(key, column, value, update_width=True)
        else:
            cache[key] = raw
            new.append((key, raw))
    if new:
        _add_rows(table, new, render)


def reset_table(table: DataTable) -> None:
    """Empty the table (a new filter): the next sync_table adds every row again."""
    table.clear()
    table.__dict__["_raw_rows"] = {}


def _add_rows(table: DataTable, rows: list[tuple[str, Any]], render: Callable[[Any], list[Any]]) -> None:
    head, rest = rows[:ADD_CHUNK], rows[ADD_CHUNK:]
    cache = table.__dict__.get("_raw_rows", {})
    for key, raw in head:
        if key not in table.rows and key in cache:
            table.add_row(*render(cache[key]), key=key)
    if rest:
        table.set_timer(0.02, lambda: _add_rows(table, rest, render))


class ProjectRef:
    """A project argument for call_service, loaded inside the worker thread (rows never cross threads)."""

    def __init__(self, project_id: int):
        self.project_id = project_id


def _resolve(value: Any) -> Any:
    return views.project(value.project_id) if isinstance(value, ProjectRef) else value


def call_service(node, module: str, function: str | Callable, *args, done: Callable[[Any], None] | None = None,
                 success: str | Callable[[Any], str] | None = None, always: Callable[[], None] | None = None,
                 failed: Callable[[Exception], bool] | None = None, **kwargs) -> None:
    """Run services.<module>.<function>(*args) in a thread worker; report the outcome as a notification.

    `function` may also be a callable, run the same way (module is then only its label). `failed(exc)` sees a
    refusal first (on the event loop) and returns True when it handled it.
    """
    label = function if isinstance(function, str) else module

    def run() -> None:
        try:
            attempt()
        finally:
            if always is not None:
                try:
                    node.app.call_from_thread(always)
                except RuntimeError:
                    pass

    def attempt() -> None:
        app = node.app
        try:
            fn = (getattr(importlib.import_module(f"ptolemy_tui.services.{module}"), function)
                  if isinstance(function, str) else function)
            result = session.call(lambda: fn(*[_resolve(a) for a in args],
                                             **{k: _resolve(v) for k, v in kwargs.items()}))
        except PtolemyError as exc:
            if failed is not None and app.call_from_thread(failed, exc):
                return  # the caller answered it (a question instead of an error)
            app.call_from_thread(app.notify, str(exc), severity="error", timeout=8)
            return
        except Exception as exc:  # noqa: BLE001 - never take the app down
            log.exception("%s.%s failed", module, label)
            app.call_from_thread(app.notify, f"{label} failed: {exc}", severity="error", timeout=8)
            return
        if success:
            text = success(result) if callable(success) else success
            if text:
                app.call_from_thread(app.notify, text)
        if done is not None:
            app.call_from_thread(done, result)

    node.run_worker(run, thread=True, group=f"service-{module}-{label}", exit_on_error=False,
                    name=f"{module}.{label}")


# Modals -----------------------------------------------------------------------------------------------------

class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; the default answer is No."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No"):
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.no} (n)", id="no", variant="primary")
                yield Button(f"{self.yes} (y)", id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class QuitScreen(ModalScreen[str]):
    """Quitting with builds running: leave them running (default), stop them, or stay."""

    BINDINGS = [
        Binding("l", "choose('leave')", "Leave running"),
        Binding("s", "choose('stop')", "Stop builds"),
        Binding("escape", "choose('stay')", "Stay"),
        Binding("q", "choose('leave')", "Quit", show=False),
    ]

    def __init__(self, running: dict[str, int]):
        super().__init__()
        self.running = running

    def compose(self) -> ComposeResult:
        lines = ", ".join(f"{name} ({n} worker{'s' if n != 1 else ''})" for name, n in sorted(self.running.items()))
        with Vertical(classes="dialog"):
            yield Static(f"Builds are running: {lines}.\nQuit and leave them running, or stop them?",
                         classes="question")
            with Horizontal(classes="buttons"):
                yield Button("Leave running (l)", id="leave", variant="primary")
                yield Button("Stop builds (s)", id="stop", variant="error")
                yield Button("Stay (esc)", id="stay")

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or "stay")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)


def binding_rows(bindings: Iterable[Any]) -> list[tuple[str, str, bool]]:
    """(keys, description, enabled) of the active bindings, one line per action: the screen's and the app's
    first, then those of the focused widget (moving around a table or tree)."""
    from textual.app import App
    from textual.screen import Screen

    def rank(active) -> int:
        own = active.binding.key in {getattr(b, "key", None) for b in type(active.node).__dict__.get("BINDINGS", [])}
        if isinstance(active.node, Screen):  # Ptolemy's keys before Textual's defaults (tab, ^c)
            return 0 if own else 3
        if isinstance(active.node, App):
            return 1 if own else 3
        return 2

    bindings = sorted(bindings, key=rank)
    seen: dict[tuple[str, str], list[str]] = {}
    enabled: dict[tuple[str, str], bool] = {}
    for active in bindings:
        binding = active.binding
        desc = binding.description or binding.action
        if binding.action in ("cursor_down", "cursor_up") and binding.key in ("j", "k"):
            desc = "Move down" if binding.action == "cursor_down" else "Move up"
        ident = (binding.action, desc)
        key = binding.key_display or _key_display(binding.key)
        seen.setdefault(ident, []).append(key)
        enabled[ident] = enabled.get(ident, False) or active.enabled
    return [(" ".join(keys), desc, enabled[ident]) for ident, keys in seen.items() for desc in [ident[1]]]


def _key_display(key: str) -> str:
    names = {"question_mark": "?", "slash": "/", "escape": "esc", "enter": "enter", "ctrl+p": "^p"}
    return names.get(key, key)


class HelpScreen(ModalScreen[None]):
    """Every binding of the screen below, and the keys that work everywhere."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def __init__(self, title: str, rows: list[tuple[str, str, bool]], store: str = ""):
        super().__init__()
        self.title_text, self.rows, self.store = title, rows, store

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help"):
            yield Label(f"Keys: {self.title_text}", classes="title")
            table = Text()
            width = max((len(k) for k, _, _ in self.rows), default=4)
            for keys, desc, on in self.rows:
                table.append(f"{keys:>{width}}  ", style="bold")
                table.append(desc + ("" if on else " (not now)") + "\n", style="" if on else "dim")
            table.append("\narrows/j/k move · enter opens · esc back · tab next pane · / filter · ctrl+p commands"
                         " · z pauses refresh", style="dim")
            if self.store:
                table.append(f"\nstore: {self.store}", style="dim")
            with VerticalScroll():
                yield Static(table, id="help-body")
            yield Button("Close (esc)", id="close")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    async def action_dismiss(self, result: Any = None) -> None:
        self.dismiss(None)


class FilterInput(Input):
    """The `/` filter line: typing narrows the table, enter keeps the filter, esc clears it."""

    BINDINGS = [Binding("escape", "clear_filter", "Clear filter")]

    def action_clear_filter(self) -> None:
        self.value = ""
        self.display = False
        self.post_message(self.Submitted(self, ""))


MIN_SIZE = (60, 16)


class TooSmallScreen(ModalScreen[None]):
    """Shown instead of a broken layout while the terminal is smaller than MIN_SIZE."""

    BINDINGS = [Binding("q", "app.request_quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Static(f"Terminal too small: Ptolemy needs at least {MIN_SIZE[0]}x{MIN_SIZE[1]}.\n"
                     "Enlarge the window (or the tmux pane); q quits.", id="too-small")


class KeyBar(Static):
    """The footer's key hints as one line of text, redrawn only when the screen's bindings change. Textual's
    Footer builds a widget per key and recomposes them all on every change: on a big project that was most of a
    tab switch (worst key 221–401 ms with it, 55–158 ms without, README "Scale")."""

    COMPONENT_CLASSES = {"keybar--key", "keybar--description"}
    DEFAULT_CSS = """
    KeyBar { dock: bottom; height: 1; width: 1fr; background: $footer-background; }
    KeyBar > .keybar--key { color: $footer-key-foreground; background: $footer-key-background; text-style: bold; }
    KeyBar > .keybar--description { color: $footer-description-foreground; background: $footer-description-background; }
    """

    def __init__(self) -> None:
        super().__init__("", id="keybar")
        self._shown: tuple = ()

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.call_after_refresh(self._bindings_changed, self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen) -> None:
        if not self.is_attached or screen is not self.screen:
            return
        seen: set[str] = set()
        hints = []
        palette = None
        for _node, binding, enabled, _tooltip in screen.active_bindings.values():
            if binding.action == "command_palette":
                palette = (self.app.get_key_display(binding), "Commands")
                continue
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            hints.append((self.app.get_key_display(binding), binding.description, enabled))
        shown = (tuple(hints), palette)
        if shown == self._shown:
            return
        self._shown = shown
        key_style = self.get_component_rich_style("keybar--key")
        text_style = self.get_component_rich_style("keybar--description")
        dim = Style(dim=True)  # a binding shown but not usable now
        line = Text(no_wrap=True, overflow="ellipsis")
        for key, description, enabled in hints:
            line.append(f" {key} ", style=key_style if enabled else key_style + dim)
            line.append(f"{description} ", style=text_style if enabled else text_style + dim)
        if palette:
            right = Text.assemble((f" {palette[0]} ", key_style), (f"{palette[1]} ", text_style))
            pad = max(1, self.size.width - line.cell_len - right.cell_len)
            line.append(" " * pad)
            line.append_text(right)
        self.update(line)

    def on_resize(self) -> None:
        self._shown = ()
        self._bindings_changed(self.screen)
