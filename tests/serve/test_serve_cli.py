"""`ptolemy serve` refuses bad options with one line and exit 2, before listening; `car export` likewise."""
from __future__ import annotations

import socket

import pytest

from tests.cli.helpers import run_cli


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'ptolemy.db'}"


def _one_line(r, *words):
    assert r.code == 2 and r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
    for w in words:
        assert w in r.err, r.err


def test_bad_serve_options_are_one_line(capsys, url, tmp_path):
    _one_line(run_cli(capsys, "--db", url, "serve", "--listen", "nonsense"), "--listen", "HOST:PORT")
    _one_line(run_cli(capsys, "--db", url, "serve", "--listen", "127.0.0.1:99999"), "out of range")
    _one_line(run_cli(capsys, "--db", url, "serve", "--token-file", str(tmp_path / "missing")), "--token-file")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    _one_line(run_cli(capsys, "--db", url, "serve", "--token-file", str(empty)), "one token")
    secret = tmp_path / "two-lines"
    secret.write_text("abc\ndef\n")
    r = run_cli(capsys, "--db", url, "serve", "--token-file", str(secret))
    _one_line(r, "one token")
    assert "abc" not in r.err and "def" not in r.err.replace("--token-file", "")
    _one_line(run_cli(capsys, "--db", url, "serve", "--base-url", "ftp://x"), "--base-url")
    _one_line(run_cli(capsys, "--db", url, "serve", "--project", "nope"), "no project named")
    _one_line(run_cli(capsys, "--db", url, "manifest", "nope", "--base-url", "not a url"), "--base-url")


def test_a_port_in_use_is_one_line(capsys, url):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        _one_line(run_cli(capsys, "--db", url, "serve", "--listen", f"127.0.0.1:{port}"), "cannot listen",
                  "--listen")


def test_car_export_of_unknown_things_is_one_line(capsys, url, tmp_path):
    _one_line(run_cli(capsys, "--db", url, "car", "export", "nope", "1", "-o", str(tmp_path / "x.car")),
              "no project named")
