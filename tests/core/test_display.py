"""The one escaping rule for names shown to a person (core.display)."""
from __future__ import annotations

import json

import pytest

from ptolemy_tui.core.display import display_text, is_plain, json_name_fields


@pytest.mark.parametrize("raw, shown", [
    (b"photos/a.jpg", "photos/a.jpg"),
    ("caf\u00e9/\u6587\u4ef6 \U0001f600".encode(), "caf\u00e9/\u6587\u4ef6 \U0001f600"),
    (b"line1\nline2", "line1\\nline2"),
    (b"\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),
    ("a\u202etxt.exe".encode(), "a\\u202etxt.exe"),
    (b"bad\xff\xfename", "bad\\xff\\xfename"),
    (b"back\\slash", "back\\\\slash"),
    (b"tab\there", "tab\\there"),
    (b"\x7f\xc2\x85", "\\x7f\\x85"),  # DEL and the C1 control NEL
    ("sep\u2028".encode(), "sep\\u2028"),
])
def test_display_text_escapes_what_a_terminal_would_act_on(raw, shown):
    assert display_text(raw) == shown
    assert "\n" not in shown and "\x1b" not in shown


def test_escaping_is_unambiguous():
    byte_one = b"a\x01"
    literal = b"a\\x01"
    assert display_text(byte_one) != display_text(literal)
    assert display_text(byte_one) == "a\\x01"
    assert display_text(literal) == "a\\\\x01"
    invalid = b"a\xff"
    literal_invalid = b"a\\xff"
    assert display_text(invalid) != display_text(literal_invalid)


def test_json_fields_carry_exact_bytes_when_not_plain():
    assert json_name_fields(b"plain name.txt") == {"path": "plain name.txt"}
    assert is_plain(b"plain name.txt")
    for raw in (b"a\x01", b"a\\x01", b"nl\nx", b"\xff", "\u202e".encode()):
        doc = json.loads(json.dumps(json_name_fields(raw, key="name")))
        assert bytes.fromhex(doc["name_hex"]) == raw
        assert doc["name"] == display_text(raw)
    assert json_name_fields(None) == {"path": None}


def test_str_input_with_surrogate_escapes_matches_bytes():
    raw = b"x\xffy"
    assert display_text(raw.decode("utf-8", "surrogateescape")) == display_text(raw) == "x\\xffy"
