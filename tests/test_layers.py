"""The layers of DESIGN.md hold: core imports no database and no UI; store, services and workers no UI; screens
read and act through services only (no store, no worker, no peewee), and so does the CLI.

import-linter checks the contracts in pyproject.toml; a direct AST scan below guards the same rule so a
missing contract cannot hide a violation.
"""
from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "ptolemy_tui"
FORBIDDEN = {
    "core": ("peewee", "playhouse", "textual", "ptolemy_tui.store", "ptolemy_tui.services", "ptolemy_tui.screens",
             "ptolemy_tui.cli", "ptolemy_tui.worker"),
    "store": ("textual", "ptolemy_tui.services", "ptolemy_tui.screens", "ptolemy_tui.cli"),
    "services": ("textual", "ptolemy_tui.screens", "ptolemy_tui.cli"),
    "worker": ("textual", "ptolemy_tui.screens", "ptolemy_tui.cli"),
    "screens": ("peewee", "playhouse", "ptolemy_tui.store", "ptolemy_tui.worker"),
    "cli": ("peewee", "playhouse", "ptolemy_tui.store", "ptolemy_tui.worker"),
}


def _imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer):
    violations = []
    for path in (PACKAGE / layer).rglob("*.py"):
        for name in _imports(path):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[layer]):
                violations.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not violations, violations


def test_import_linter_contracts():
    exe = shutil.which("lint-imports", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed")
    proc = subprocess.run([exe], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
