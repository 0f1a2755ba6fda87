"""Real migrations: a store written by the first release upgrades in place and keeps everything, and the
schema the migration steps build equals the one the current models describe, on SQLite and PostgreSQL."""
from __future__ import annotations

import shutil
from pathlib import Path

import peewee
import psycopg2
import pytest

from ptolemy_tui.store import db, models, schema
from ptolemy_tui.store.models import Car, CarEntry, Container, ContainerItem, Directory, File, Project, Scan
from tests import pgserver

STORES = Path(__file__).resolve().parents[1] / "fixtures" / "stores"

# What the first release wrote into the fixtures (tests/fixtures/stores/README.md says how they were made).
V1_COUNTS = {Project: 1, Scan: 1, Directory: 5, File: 26, Container: 2, ContainerItem: 28, Car: 2, CarEntry: 28}
V1_CARS = {
    ("bafybeicfhszxvfxjc3ktxybfnf5zdukigj4lgeikosqgtg6e4uelr3pdqa",
     "baga6ea4seaqaeazws35zucdxcyr4n5laxqewftaxcqv74y7c37ifydvxxiqpcfq"),
    ("bafybeigfvkryhhyv32yqtmoklcmltfcmkiajbp6oiai5vhbog3yyb2y2sm",
     "baga6ea4seaqgixj6cz4jmfuxr5w5oinpa4wulwosldqynuwkiekih6efohalmoi"),
}


def describe_schema(database: peewee.Database) -> dict:
    """Tables, columns (name, type, nullability), indexes (columns, uniqueness) and foreign keys; no names
    that differ only by how they were created."""
    described = {}
    for table in sorted(database.get_tables()):
        columns = sorted((c.name, c.data_type.lower(), c.null) for c in database.get_columns(table))
        indexes = sorted((tuple(i.columns), i.unique) for i in database.get_indexes(table))
        foreign = sorted((f.column, f.dest_table, f.dest_column) for f in database.get_foreign_keys(table))
        described[table] = {"columns": columns, "indexes": sorted(set(indexes)), "foreign_keys": foreign}
    return described


def models_schema(make_database) -> dict:
    """The schema that create_tables(current models) gives on a scratch store of the same kind."""
    scratch = make_database()
    with scratch.bind_ctx(models.ALL_MODELS):
        scratch.create_tables(models.ALL_MODELS, safe=True)
        described = describe_schema(scratch)
    scratch.close()
    return described


def assert_v1_data_kept() -> None:
    for model, count in V1_COUNTS.items():
        assert model.select().count() == count, model.__name__
    assert {(c.payload_cid, c.piece_cid) for c in Car.select()} == V1_CARS
    project = Project.get(Project.name == "v1proj")
    assert project.status == "built" and project.car_size == 2 * 1024 * 1024
    assert File.get(File.name == b"caf\xc3\xa9 \xff name.txt").size == len(b"non-utf8 name")
    assert {c.state for c in Container.select()} == {"built"}


@pytest.fixture
def v1_sqlite_url(tmp_path):
    path = tmp_path / "v1.sqlite"
    shutil.copyfile(STORES / "v1.sqlite", path)
    return f"sqlite:///{path}"


def _load_dump(url: str) -> None:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute((STORES / "v1.pg.sql").read_text())
    finally:
        conn.close()


@pytest.fixture
def v1_pg_url(pg_admin_url):
    url = pgserver.create_database(pg_admin_url)
    _load_dump(url)
    yield url
    db.close_database()
    pgserver.drop_database(pg_admin_url, url)


def _upgrades_in_place(old_url: str, fresh_url: str) -> None:
    """The first release's store opens, is migrated, keeps every row, and then has a fresh store's schema."""
    store = db.open_database(old_url)
    try:
        assert schema.current_version(store) == schema.SCHEMA_VERSION
        assert_v1_data_kept()
        upgraded = describe_schema(store)
    finally:
        db.close_database()
    fresh = db.open_database(fresh_url)
    try:
        assert upgraded == describe_schema(fresh)
    finally:
        db.close_database()


def test_v1_sqlite_store_upgrades_in_place(v1_sqlite_url, tmp_path):
    _upgrades_in_place(v1_sqlite_url, f"sqlite:///{tmp_path / 'fresh.db'}")


def test_v1_postgres_store_upgrades_in_place(v1_pg_url, pg_store_url):
    _upgrades_in_place(v1_pg_url, pg_store_url)


def test_migrations_build_what_the_models_describe(store, store_url, tmp_path, request):
    """A field added to a model without its migration step (or the reverse) fails here."""
    if store_url.startswith("sqlite"):
        def scratch():
            return db.make_database(f"sqlite:///{tmp_path / 'scratch.db'}")
    else:
        admin = request.getfixturevalue("pg_admin_url")
        scratch_url = pgserver.create_database(admin)
        request.addfinalizer(lambda: pgserver.drop_database(admin, scratch_url))

        def scratch():
            return db.make_database(scratch_url)
    wanted = models_schema(scratch)
    if not store_url.startswith("sqlite"):  # the one designed difference: see schema.BULK_REFERENCES
        for table, parents in schema.BULK_REFERENCES.items():
            keys = wanted[table]["foreign_keys"]
            assert {k[1] for k in keys} >= set(parents)
            wanted[table]["foreign_keys"] = [k for k in keys if k[1] not in parents]
    assert describe_schema(store) == wanted


def test_every_step_runs_in_order_and_is_recorded(tmp_path):
    store = db.open_database(f"sqlite:///{tmp_path / 's.db'}")
    try:
        assert schema.current_version(store) == schema.SCHEMA_VERSION == len(schema.MIGRATIONS)
        assert schema.migrate(store) == schema.SCHEMA_VERSION  # nothing left to do, nothing redone
    finally:
        db.close_database()


def test_a_step_that_copies_a_referenced_table_keeps_the_rows_pointing_at_it(v1_sqlite_url, monkeypatch):
    """SQLite adds a NOT NULL column by copying the table and dropping the old one; with foreign keys on that
    drop would cascade to every CAR entry. The runner turns them off for the steps and checks them after."""
    from playhouse import migrate as pm

    def add_probe(database, migrator):
        pm.migrate(migrator.add_column("car", "probe", peewee.BigIntegerField(default=0)))
        pm.migrate(migrator.add_column("container", "probe", peewee.BigIntegerField(default=0)))

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, add_probe])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    store = db.open_database(v1_sqlite_url)
    try:
        assert schema.current_version(store) == schema.SCHEMA_VERSION
        assert CarEntry.select().count() == V1_COUNTS[CarEntry]
        assert ContainerItem.select().count() == V1_COUNTS[ContainerItem]
        assert store.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        db.close_database()
