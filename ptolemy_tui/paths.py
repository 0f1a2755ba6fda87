"""Where Ptolemy keeps its own files: XDG data (the SQLite store) and XDG state (logs)."""
from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "ptolemy"


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "ptolemy"


def default_db_path() -> Path:
    return data_dir() / "ptolemy.db"


def default_log_path() -> Path:
    return state_dir() / "ptolemy.log"


def cache_dir() -> Path:
    """XDG cache: things Ptolemy can always recompute (the CommP engine calibration)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ptolemy"
