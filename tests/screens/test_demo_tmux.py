"""`ptolemy demo`: the sample tree and project (service and CLI), and a smoke test in a real terminal: tmux runs
the demo, keys go in with send-keys, the screen comes back with capture-pane."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptolemy_tui.services import demo

pytestmark = pytest.mark.timeout(60)

PTOLEMY = str(Path(sys.executable).with_name("ptolemy"))


def test_demo_creates_a_sample_tree_and_project(sqlite_store, tmp_path):
    project, base = demo.create_demo(str(tmp_path / "d"), files=40)
    assert project.name == "demo"
    assert Path(base, "data", "video", "big-recording.bin").stat().st_size == demo.BIG_FILE_SIZE
    assert project.shard_size < demo.BIG_FILE_SIZE  # the big file gets sharded
    assert len(list(Path(base, "data").rglob("*"))) > 40
    again, _ = demo.create_demo(str(tmp_path / "e"), files=5)
    assert again.name == "demo-2"


def test_demo_cli_without_ui(tmp_path):
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"), XDG_STATE_HOME=str(tmp_path / "state"))
    out = subprocess.run([PTOLEMY, "demo", "--dir", str(tmp_path / "d"), "--files", "20", "--no-tui"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "demo"
    # the demo keeps out of the real store: its project lives in a store beside the sample
    assert not (tmp_path / "xdg" / "ptolemy" / "ptolemy.db").exists()
    own = f"sqlite:///{tmp_path}/d/ptolemy-demo.db"
    assert own in out.stderr
    listing = subprocess.run([PTOLEMY, "--db", own, "project", "list"], env=env, capture_output=True, text=True,
                             timeout=30)
    assert "demo" in listing.stdout
    again = subprocess.run([PTOLEMY, "demo", "--dir", str(tmp_path / "e"), "--files", "5", "--no-tui"], env=env,
                           capture_output=True, text=True, timeout=30)
    assert again.stdout.strip() == "demo"  # not demo-2: each demo has a store of its own


class Tmux:
    def __init__(self, tmp_path: Path, name: str):
        self.socket = f"ptolemy-test-{os.getpid()}-{name}"
        self.name = name

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10,
                              check=check)

    def start(self, command: str, width: int = 80, height: int = 24) -> None:
        self.run("-f", "/dev/null", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                 command)
        self.run("set", "-sg", "escape-time", "10")
        self.run("set", "-g", "remain-on-exit", "on")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name).stdout

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen()
            if text in shown:
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen:\n{shown}")
            time.sleep(0.2)

    def dead(self) -> bool:
        out = self.run("display-message", "-p", "-t", self.name, "#{pane_dead}", check=False)
        return out.stdout.strip() == "1"

    def kill(self) -> None:
        self.run("kill-server", check=False)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_demo_in_tmux(tmp_path):
    tmux = Tmux(tmp_path, "demo")
    env = (f"env -u PTOLEMY_DB XDG_DATA_HOME={tmp_path}/xdg XDG_STATE_HOME={tmp_path}/state NO_COLOR=1 "
           f"TERM=xterm-256color")
    (tmp_path / "tmp").mkdir()
    env += f" TMPDIR={tmp_path}/tmp"
    tmux.start(f"{env} {PTOLEMY} demo --files 120 --rate 4MiB")  # a temporary sample, removed on exit
    try:
        tmux.wait_for("Ptolemy — demo", 20)
        # the demo scans, packs and builds by itself, then shows the build tab
        shown = tmux.wait_for("built  blitz", 45)
        assert "100%" in shown
        tmux.keys("5")
        shown = tmux.wait_for("baga6ea4sea")  # piece CIDs in the CARs table
        assert "Piece CID" in shown
        tmux.keys("2")
        shown = tmux.wait_for("sort: size")
        assert "video/" in shown
        tmux.keys("?")
        tmux.wait_for("Keys:")
        tmux.keys("Escape")
        tmux.keys("Escape")
        shown = tmux.wait_for("Progress")  # the projects table
        assert "demo" in shown and "built" in shown
        tmux.keys("q")
        deadline = time.monotonic() + 10
        while not tmux.dead():
            assert time.monotonic() < deadline, tmux.screen()
            time.sleep(0.2)
    finally:
        tmux.kill()
    # nothing left behind: no project in the real store, no temporary tree, CARs or store
    assert not (tmp_path / "xdg" / "ptolemy" / "ptolemy.db").exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_tui_subcommand_arguments():
    from ptolemy_tui.cli import build_parser

    args = build_parser().parse_args(["tui", "demo", "--tab", "build", "--db", "sqlite:///x.db"])
    assert (args.project, args.tab, args.db) == ("demo", "build", "sqlite:///x.db")
    assert args.handler.__name__ == "run_tui"
    assert build_parser().parse_args([]).command is None  # no subcommand: the TUI
