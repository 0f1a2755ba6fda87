"""How numbers reach the screen: humanized sizes, rates, durations, and text bars (no colour needed)."""
from __future__ import annotations

import time

from humanize import naturalsize
from rich.text import Text

EIGHTHS = " ▏▎▍▌▋▊▉█"


def size(n: int | float | None) -> str:
    if n is None:
        return "-"
    return naturalsize(int(n), binary=True, format="%.1f")


def rate(bytes_per_second: float | None) -> str:
    if not bytes_per_second:
        return "-"
    return f"{naturalsize(bytes_per_second, binary=True, format='%.1f')}/s"


def mibps(bytes_per_second: float | None) -> str:
    """A rate column's number: MiB/s, the binary unit every size and rate on screen uses."""
    if not bytes_per_second:
        return "-"
    return f"{bytes_per_second / 2**20:.1f}"


def count(n: int | None) -> str:
    return "-" if n is None else f"{int(n):,}"


def duration(seconds: float | None) -> str:
    """3s, 4m12s, 2h05m, 3d04h: compact, for ETAs and ages."""
    if seconds is None or seconds < 0 or seconds != seconds or seconds == float("inf"):
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def eta(remaining: float | None, bytes_per_second: float | None) -> str:
    if remaining is None or not bytes_per_second or bytes_per_second <= 0:
        return "-"
    return duration(remaining / bytes_per_second)


def clock(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(ts))


def stamp(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def percent(fraction: float | None) -> str:
    if fraction is None:
        return "-"
    return f"{fraction * 100:.0f}%"


def bar(fraction: float | None, width: int = 10, *, style: str = "") -> Text:
    """A fill bar in eighth blocks; readable without colour (the filled part is solid)."""
    fraction = 0.0 if fraction is None else max(0.0, min(1.0, float(fraction)))
    eighths = int(round(fraction * width * 8))
    full, rest = divmod(eighths, 8)
    body = "█" * full + (EIGHTHS[rest] if rest and full < width else "")
    body = body.ljust(width, "·")
    text = Text(body, style=style or _bar_style(fraction))
    return text


def _bar_style(fraction: float) -> str:
    if fraction >= 0.999:
        return "green"
    if fraction >= 0.5:
        return "cyan"
    return "yellow" if fraction > 0 else "dim"


def bar_pct(fraction: float | None, width: int = 10) -> Text:
    text = bar(fraction, width)
    text.append(f" {percent(fraction) if fraction is not None else '-':>4}")
    return text


STATE_STYLES = {
    "pending": "dim",
    "building": "cyan",
    "built": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "waiting": "bold yellow reverse",
    "idle": "dim",
    "stopped": "dim",
    "scanning": "cyan",
    "containerizing": "cyan",
    "defined": "",
    "scanned": "",
    "containerized": "",
}


def state(text: str | None) -> Text:
    text = text or "-"
    label = "waiting for staging" if text == "waiting" else text
    return Text(label, style=STATE_STYLES.get(text, ""))


SPARK = "▁▂▃▄▅▆▇█"


def spark(values, width: int, *, lo: float = 0.0, hi: float | None = None) -> str:
    """A one-line sparkline of the last `width` values on an absolute scale (lo..hi; hi defaults to the max)."""
    values = list(values)[-max(width, 1):]
    if not values or width <= 0:
        return ""
    top = hi if hi is not None else max(values)
    span = (top - lo) or 1.0
    out = []
    for v in values:
        level = (min(max(v, lo), top) - lo) / span
        out.append(SPARK[min(len(SPARK) - 1, int(level * (len(SPARK) - 1) + 0.5))] if v > lo else " ")
    return "".join(out).rjust(width)
