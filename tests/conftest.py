"""Fixtures shared by every test: an isolated environment, and a real store on SQLite and on PostgreSQL."""
from __future__ import annotations

import os

import peewee
import pytest

from tests import pgserver
from tests.states import orphans, unknown_states

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """No test reads or writes the operator's ~/.local or ~/.cache, or inherits their PTOLEMY_DB."""
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.delenv("PTOLEMY_DB", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    yield


_CLUSTER: list[pgserver.ThrowawayCluster] = []


@pytest.fixture(scope="session")
def pg_admin_url():
    """The URL of a PostgreSQL server's maintenance database, or a skip (a failure in CI) saying why not."""
    env_url = os.environ.get("PTOLEMY_TEST_POSTGRES")
    cluster = None
    if env_url:
        url = env_url
    else:
        try:
            cluster = pgserver.ThrowawayCluster()
            url = cluster.start()
            _CLUSTER.append(cluster)
        except Exception as exc:  # noqa: BLE001 - any reason becomes the visible skip reason
            if cluster:
                cluster.stop()
            reason = f"no PostgreSQL for the tests: {exc}"
            if IN_CI:
                pytest.fail(f"{reason} (a skipped PostgreSQL test fails CI)", pytrace=False)
            pytest.skip(reason)
    yield url
    if cluster:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_cluster_controls(pg_admin_url):
    """The throwaway cluster (restart() for tests that need it); None when the server is not ours."""
    return _CLUSTER[0] if _CLUSTER else None


@pytest.fixture(scope="session")
def pg_database_url(pg_admin_url):
    url = pgserver.create_database(pg_admin_url)
    yield url
    pgserver.drop_database(pg_admin_url, url)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    """A fresh, empty store URL of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ptolemy.db'}"
    url = request.getfixturevalue("pg_database_url")
    pgserver.reset_schema(url)
    return url


def _opened_store(url: str):
    """Open and migrate the store at url, bound to the models, for one test."""
    from ptolemy_tui.store import db

    database = db.open_database(url)
    yield database
    # Whatever the test did, the store holds only states the enums know (every write goes through transitions).
    try:
        unknown = unknown_states()
        orphaned = orphans()
    except peewee.PeeweeException:  # a test that left the store unreachable has its own assertions
        unknown, orphaned = [], []
    db.close_database()
    assert not unknown, f"the store holds states the enums lack: {unknown}"
    assert not orphaned, f"rows whose parent is gone: {orphaned}"


@pytest.fixture
def store(store_url):
    """An open, migrated store bound to the models."""
    yield from _opened_store(store_url)


@pytest.fixture
def pg_store_url(pg_database_url):
    """A fresh, empty PostgreSQL store URL, for tests that only make sense there (a server restart)."""
    pgserver.reset_schema(pg_database_url)
    return pg_database_url


@pytest.fixture
def pg_store(pg_store_url):
    yield from _opened_store(pg_store_url)


@pytest.fixture
def sqlite_store(tmp_path):
    yield from _opened_store(f"sqlite:///{tmp_path / 'ptolemy.db'}")
