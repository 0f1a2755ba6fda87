"""One rule for showing a name to a person: every screen, every text output and every JSON `path` uses it.

File names are bytes and may hold anything but '/' and NUL: invalid UTF-8, newlines, ESC sequences that
retitle a terminal, U+202E that reverses the rest of a line. Shown raw they break rows or lie about the
name, so a name is shown as escaped text:

- a byte that is not valid UTF-8 becomes ``\\xNN``;
- a control or format character (C0, DEL, C1, bidi overrides and isolates, zero-width marks, line and
  paragraph separators) becomes ``\\n``, ``\\t``, ``\\r`` or ``\\xNN`` / ``\\uNNNN`` / ``\\UNNNNNNNN``;
- a backslash becomes ``\\\\``, so every backslash in the output starts an escape and the rule is
  unambiguous: a file literally named ``a\\x01`` shows as ``a\\\\x01``, one holding the byte 0x01 as ``a\\x01``.

JSON documents carry the same escaped text under their usual key plus, whenever the name is not plain
printable UTF-8, the exact bytes in hex under ``<key>_hex``.
"""
from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}
# Unicode categories shown escaped: controls, format characters (bidi overrides, zero-width joiners),
# line and paragraph separators, and surrogates (which never belong in text).
_ESCAPED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def _escape_char(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _needs_escape(ch: str) -> bool:
    if ch in _NAMED:
        return True
    if " " <= ch <= "~":
        return False
    return unicodedata.category(ch) in _ESCAPED_CATEGORIES


def display_text(raw: bytes | str | None) -> str:
    """``raw`` as one line of unambiguous, terminal-safe text (see the module's rule). None shows as ''."""
    if raw is None:
        return ""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    out: list[str] = []
    view = bytes(raw)
    pos = 0
    while pos < len(view):
        try:
            text = view[pos:].decode("utf-8")
            bad_at = None
        except UnicodeDecodeError as exc:
            text = view[pos:pos + exc.start].decode("utf-8")
            bad_at = pos + exc.start
            bad_end = pos + exc.end
        if any(_needs_escape(c) for c in text):
            out.extend(_escape_char(c) if _needs_escape(c) else c for c in text)
        else:
            out.append(text)
        if bad_at is None:
            break
        out.extend(f"\\x{b:02x}" for b in view[bad_at:bad_end])
        pos = bad_end
    return "".join(out)


def is_plain(raw: bytes | str | None) -> bool:
    """True when ``raw`` is valid UTF-8 that :func:`display_text` shows unchanged."""
    if raw is None:
        return True
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(_needs_escape(c) for c in text)


def json_name_fields(raw: bytes | str | None, key: str = "path") -> dict[str, str | None]:
    """``{key: display text}`` plus ``{key + '_hex': exact bytes}`` when the name is not plain printable UTF-8."""
    if raw is None:
        return {key: None}
    fields: dict[str, str | None] = {key: display_text(raw)}
    if not is_plain(raw):
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        fields[f"{key}_hex"] = bytes(raw).hex()
    return fields
