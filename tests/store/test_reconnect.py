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


def _poll_in_new_threads(n: int, fn):
    """What the TUI does: each refresh runs in a new thread worker, through services.session.call."""
    import threading

    from ptolemy_tui.services import session

    out = []
    for _ in range(n):
        t = threading.Thread(target=lambda: out.append(session.call(fn)))
        t.start()
        t.join()
    return out


def _rows_and_connection():
    from ptolemy_tui.services import views
    from ptolemy_tui.store.models import database

    return views.project_rows(), database.obj.connection()  # the driver connection this poll used


@pytest.mark.postgres
def test_the_tuis_pooled_readers_reuse_connections_and_survive_a_restart(pg_database_url, pg_cluster_controls):
    if pg_cluster_controls is None:
        pytest.skip("the PostgreSQL server is not ours to restart (PTOLEMY_TEST_POSTGRES)")
    from tests import pgserver

    pgserver.reset_schema(pg_database_url)
    db.open_database(pg_database_url, pooled=True)
    try:
        Project.create(name="r", target_dir="/s", staging_dir="/t", car_size=1 << 30, shard_size=1 << 20, workers=1)
        polls = _poll_in_new_threads(20, _rows_and_connection)
        assert [rows[0].name for rows, _ in polls] == ["r"] * 20
        connections = {id(conn) for _, conn in polls}  # the polls hold them: ids are not reused
        assert len(connections) == 1, f"{len(connections)} connections for 20 polls"  # one reader, reused
        pg_cluster_controls.restart()
        polls = _poll_in_new_threads(3, _rows_and_connection)  # the dropped connection is replaced
        assert [rows[0].name for rows, _ in polls] == ["r"] * 3
    finally:
        db.close_database()


def test_sqlite_pool_reuses_one_reader(tmp_path):
    db.open_database(f"sqlite:///{tmp_path / 'p.db'}", pooled=True)
    try:
        Project.create(name="r", target_dir="/s", staging_dir="/t", car_size=1 << 30, shard_size=1 << 20, workers=1)
        polls = _poll_in_new_threads(20, _rows_and_connection)
        assert len({id(conn) for _, conn in polls}) == 1 and polls[-1][0][0].name == "r"
    finally:
        db.close_database()
