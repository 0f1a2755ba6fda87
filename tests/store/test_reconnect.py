"""A long-lived CLI/TUI process keeps working after PostgreSQL restarts (outside a transaction)."""
from __future__ import annotations

import pytest

from ptolemy_tui.store import db
from ptolemy_tui.store.models import Project


@pytest.mark.postgres
def test_queries_survive_a_server_restart(pg_database_url, pg_cluster_controls):
    if pg_cluster_controls is None:
        pytest.skip("the PostgreSQL server is not ours to restart (PTOLEMY_TEST_POSTGRES)")
    from tests import pgserver

    pgserver.reset_schema(pg_database_url)
    db.open_database(pg_database_url)
    try:
        Project.create(name="r", target_dir="/s", staging_dir="/t", car_size=1 << 30, shard_size=1 << 20, workers=1)
        pg_cluster_controls.restart()
        assert Project.select().count() == 1  # the dropped connection is replaced transparently
    finally:
        db.close_database()
