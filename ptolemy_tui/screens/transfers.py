"""The Build tab's "Serving" panel: what `ptolemy serve` is sending of this project's pieces, live.

Shown only while the project has transfers in the store (live ones, or ones that ended in the last ten
minutes), so a project nobody serves keeps its Build tab as it was.
"""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from ptolemy_tui.screens import fmt
from ptolemy_tui.screens.base import NavTable, sync_table

RECENT_SECONDS = 600.0
COLUMNS = [("client", "Client"), ("piece", "Piece CID"), ("kind", "CAR"), ("range", "Range"),
           ("progress", "Sent"), ("rate", "Rate"), ("state", "State")]


def rows_for(project_id: int, now: float) -> list[dict[str, Any]]:
    """The project's transfers worth showing (the screens' data layer calls this from a thread)."""
    from ptolemy_tui.services import pieces

    return [t for t in pieces.list_transfers(project_id, limit=30)
            if t["live"] or (t["finished_at"] or t["updated_at"]) > now - RECENT_SECONDS]


class TransfersPanel(Vertical):
    DEFAULT_CSS = """
    TransfersPanel { height: auto; max-height: 14; }
    TransfersPanel NavTable { height: auto; max-height: 12; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="transfers-title")
        yield NavTable(id="transfers-table")

    def on_mount(self) -> None:
        table = self.query_one("#transfers-table", NavTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.display = False

    def show(self, rows: list[dict[str, Any]]) -> None:
        self.display = bool(rows)
        if not rows:
            return
        live = [r for r in rows if r["live"]]
        rate = sum(r["rate"] for r in live)
        title = Text("serving ", style="bold")
        title.append(f"{len(live)} live transfer(s), {fmt.rate(rate)}", style="green" if live else "dim")
        title.append("   (ptolemy serve; finished ones stay for 10 minutes)", style="dim")
        self.query_one("#transfers-title", Static).update(title)
        keyed = [(str(r["id"]), tuple((k, r[k]) for k in ("client", "piece_cid", "inline", "range_start",
                                                            "range_end", "bytes_sent", "rate", "state", "status")))
                 for r in rows]
        sync_table(self.query_one("#transfers-table", NavTable), keyed, [k for k, _ in COLUMNS],
                   lambda raw: self.cells(dict(raw)))

    @staticmethod
    def cells(r: dict[str, Any]) -> list[Any]:
        total = r["range_end"] - r["range_start"]
        fraction = r["bytes_sent"] / total if total else 1.0
        piece = r["piece_cid"]
        short = f"{piece[:12]}…{piece[-8:]}" if len(piece) > 24 else piece
        span = f"{fmt.size(r['range_start'])}–{fmt.size(r['range_end'])}" if r["status"] == 206 else "all"
        return [r["client"], short, "inline" if r["inline"] else "staged", span,
                Text.assemble(fmt.bar_pct(fraction, 8), f" {fmt.size(r['bytes_sent'])}"), fmt.rate(r["rate"]),
                fmt.state(r["state"])]
