"""`ptolemy web`: the same app served to a browser by textual-serve, driven in headless Chromium (Debian's
`chromium`, which .ci/run installs) through Playwright: the page loads, shows the projects, enter opens one.

The terminal in the page draws on a canvas, so the test reads what the app sends: an init script records the
websocket's binary frames (the app's terminal output) before the page's own script connects."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptolemy_tui.cli.tui import parse_listen, web_command
from ptolemy_tui.errors import UsageError

PTOLEMY = str(Path(sys.executable).with_name("ptolemy"))
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
RECORD_FRAMES = """
(() => {
  window.__screen = [];
  const Native = window.WebSocket;
  window.WebSocket = function (...args) {
    const ws = new Native(...args);
    ws.addEventListener('message', (e) => {
      if (typeof e.data !== 'string') window.__screen.push(new TextDecoder().decode(new Uint8Array(e.data)));
    });
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();
"""


def test_listen_addresses():
    assert parse_listen("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    assert parse_listen("9001") == ("127.0.0.1", 9001)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    for bad in ("host:", "127.0.0.1:0", "127.0.0.1:70000", "x:y"):
        with pytest.raises(UsageError, match="--listen"):
            parse_listen(bad)
    # the store never travels on the command line (it may hold a password)
    assert "postgres" not in web_command("demo") and web_command("demo").endswith("tui demo")


def test_web_bad_listen_is_one_line(tmp_path):
    env = dict(os.environ, PTOLEMY_DB=f"sqlite:///{tmp_path}/p.db", XDG_STATE_HOME=str(tmp_path / "state"))
    out = subprocess.run([PTOLEMY, "web", "--listen", "localhost:http"], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--listen" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ptolemy web exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("ptolemy web never listened")


@pytest.mark.timeout(120)
def test_web_view_in_headless_chromium(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    env = dict(os.environ, PTOLEMY_DB=f"sqlite:///{tmp_path}/p.db", XDG_STATE_HOME=str(tmp_path / "state"),
               XDG_DATA_HOME=str(tmp_path / "data"))
    subprocess.run([PTOLEMY, "project", "create", "webcheck", "--target", str(tmp_path),
                    "--staging", str(tmp_path.parent / f"{tmp_path.name}-staging"), "--car-size", "1GiB",
                    "--shard-size", "64MiB"], env=env, check=True, capture_output=True, timeout=60)
    port = _free_port()
    server = subprocess.Popen([PTOLEMY, "web", "--listen", f"127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_listening(port, server)
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                page.add_init_script(RECORD_FRAMES)
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function("window.__screen.join('').includes('webcheck')", timeout=30000)
                shown = page.evaluate("window.__screen.join('')")
                assert "projects" in shown and "Scan tree" not in shown
                page.click(".textual-terminal")
                page.keyboard.press("Enter")  # open the highlighted project
                page.wait_for_function("window.__screen.join('').includes('Scan tree')", timeout=30000)
                assert "Overview" in page.evaluate("window.__screen.join('')")
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
