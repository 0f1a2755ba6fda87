"""A worker on SQLite does not load psycopg2 (peewee would import it at start-up); one on PostgreSQL does."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ptolemy_tui.worker.driver import store_is_sqlite

PROBE = """
import sys
from ptolemy_tui.cli import main
sys.argv = ['ptolemy', *sys.argv[1:], 'worker', '--project', 'nope']
try:
    main()
except SystemExit:
    pass
import peewee
print('driver', sys.modules.get('psycopg2') is not None, peewee.psycopg2 is not None)
"""


@pytest.mark.parametrize("url,ini,env,want", [
    ("sqlite:////x.db", None, None, True), ("postgresql://u@h/db", None, "sqlite:////y.db", False),
    (None, "db.ini", "sqlite:////y.db", False), (None, None, "postgresql://u@h/db", False), (None, None, None, True),
])
def test_store_is_sqlite_follows_resolve_url(monkeypatch, url, ini, env, want):
    if env:
        monkeypatch.setenv("PTOLEMY_DB", env)
    assert store_is_sqlite(url, ini) is want


def test_a_sqlite_worker_never_imports_psycopg2(tmp_path):
    out = subprocess.run([sys.executable, "-c", PROBE, "--db", f"sqlite:///{tmp_path}/s.db"], capture_output=True,
                         text=True, timeout=60)
    assert "no project named 'nope'" in out.stderr
    assert out.stdout.split() == ["driver", "False", "False"]


def test_a_postgres_worker_keeps_the_driver():
    pytest.importorskip("psycopg2")
    probe = ("import sys; from ptolemy_tui.worker.driver import skip_postgres_driver; "
             "print(skip_postgres_driver('postgresql://u@h/db', None)); import peewee; print(peewee.psycopg2 is not None)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "True"], out.stderr
