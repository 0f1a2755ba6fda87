"""A non-editable wheel installed into a fresh venv gives a working `ptolemy` that finds its stylesheet and
screens and starts headless — outside the source tree, so nothing is borrowed from the checkout."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import venv
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

HEADLESS_START = textwrap.dedent("""
    import asyncio, inspect, os, sys
    import ptolemy_tui, textual.app
    from ptolemy_tui.screens import app as app_module
    from ptolemy_tui.store import db
    assert "site-packages" in ptolemy_tui.__file__, ptolemy_tui.__file__
    db.open_database("sqlite:///" + os.path.join(sys.argv[1], "t.db"))
    [App] = [c for _, c in inspect.getmembers(app_module, inspect.isclass)
             if issubclass(c, textual.app.App) and c.__module__ == app_module.__name__]
    async def main():
        app = App()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            paths = [str(p) for p in app.css_path]
            assert paths and all(os.path.exists(p) and "site-packages" in p for p in paths), paths
            print("screen:", type(app.screen).__name__)
    asyncio.run(main())
""")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_installs_and_runs(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    [wheel] = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ptolemy_tui/ptolemy.tcss" in names
    assert any(n.startswith("ptolemy_tui/screens/") for n in names)
    assert not any(n.startswith("screens/") for n in names), "screens must not be a top-level module"

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]

    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"), XDG_STATE_HOME=str(tmp_path / "xdg"))
    version = subprocess.run([str(env_dir / "bin" / "ptolemy"), "--version"], capture_output=True, text=True,
                             cwd=tmp_path, env=env)
    assert version.returncode == 0 and version.stdout.startswith("ptolemy "), version.stderr
    start = subprocess.run([str(py), "-c", HEADLESS_START, str(tmp_path)], capture_output=True, text=True,
                           cwd=tmp_path, env=env, timeout=120)
    assert start.returncode == 0, start.stdout + start.stderr
    assert "screen:" in start.stdout
