"""Schema version and forward migrations. A store written by a newer Ptolemy is refused, never guessed at.

Version 1 is frozen in schema_v1 (the tables as the first release made them). Every later change is one
step appended to MIGRATIONS, written with playhouse.migrate, and a fresh store is built by the very same
steps as an old store is upgraded by, so the two cannot drift. tests/store/test_migrations.py checks that the
result equals what the current models describe, and that stores written by the first release upgrade in place.

Adding a column: add the field to the model in models.py, then append a step such as

    def _v2_container_generation(db, migrator):
        pm.migrate(migrator.add_column("container", "generation", peewee.BigIntegerField(default=0)))

Never edit or reorder a released step.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import peewee
from playhouse import migrate as pm
from playhouse.migrate import SchemaMigrator

from ptolemy_tui.errors import UsageError
from ptolemy_tui.store import models, schema_v1

Step = Callable[[peewee.Database, SchemaMigrator], None]


def _v1_create(db: peewee.Database, migrator: SchemaMigrator) -> None:
    schema_v1.create(db)


def _v2_s3_source(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """S3 targets: the project's connection options, and each object's ETag for its change token."""
    pm.migrate(
        migrator.add_column("project", "s3_endpoint", peewee.TextField(null=True)),
        migrator.add_column("project", "s3_region", peewee.CharField(max_length=64, null=True)),
        migrator.add_column("project", "s3_profile", peewee.CharField(max_length=128, null=True)),
        migrator.add_column("project", "s3_no_sign", peewee.BooleanField(default=False)),
        migrator.add_column("file", "etag", peewee.CharField(max_length=128, null=True)),
    )


def _v3_serve_tables(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """Inline CAR plans and the HTTP server's transfers (`ptolemy serve`): two new tables, frozen here as
    they were first created so that later steps can change the models."""

    class Base(peewee.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Car(Base):  # only the key, for the reference
        class Meta:
            table_name = "car"

    class Project(Base):
        class Meta:
            table_name = "project"

    class CarPlan(Base):
        car = peewee.ForeignKeyField(Car, unique=True, on_delete="CASCADE")
        data = peewee.BlobField()

    class Transfer(Base):
        server = peewee.CharField(max_length=128)
        client = peewee.CharField(max_length=128)
        project = peewee.ForeignKeyField(Project, null=True, on_delete="CASCADE")
        piece_cid = peewee.CharField(max_length=128)
        inline = peewee.BooleanField(default=False)
        range_start = peewee.BigIntegerField(default=0)
        range_end = peewee.BigIntegerField(default=0)
        bytes_sent = peewee.BigIntegerField(default=0)
        rate = peewee.DoubleField(default=0.0)
        status = peewee.IntegerField(default=200)
        state = peewee.CharField(max_length=16, default="active")
        message = peewee.TextField(null=True)
        started_at = peewee.DoubleField()
        updated_at = peewee.DoubleField()
        finished_at = peewee.DoubleField(null=True)

        class Meta:
            indexes = ((("project", "started_at"), False),)

    db.create_tables([CarPlan, Transfer])


def _v4_supervision_and_fencing(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """The build supervisor's claim on its project, the worker count it keeps, and the claim generation
    (fencing token) of every container."""
    pm.migrate(
        migrator.add_column("project", "supervisor", peewee.CharField(max_length=128, null=True)),
        migrator.add_column("project", "supervised_at", peewee.DoubleField(null=True)),
        migrator.add_column("project", "build_workers", peewee.IntegerField(null=True)),
        migrator.add_column("container", "generation", peewee.BigIntegerField(default=0)),
    )


def _v5_project_car_version(db: peewee.Database, migrator: SchemaMigrator) -> None:
    pm.migrate(migrator.add_column("project", "car_version", peewee.IntegerField(default=1)))


def _v6_dataset_roots(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """The dataset root DAGs (`ptolemy dag`) and the whole-file CIDs of sharded files, frozen as created."""
    from ptolemy_tui.store.fields import PathField

    class _Base(peewee.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Project(_Base):
        pass

    class File(_Base):
        pass

    class DatasetRoot(_Base):
        project = peewee.ForeignKeyField(Project, on_delete="CASCADE")
        root_cid = peewee.CharField(max_length=128)
        path = peewee.TextField()
        piece_cid = peewee.CharField(max_length=128)
        piece_cid_v2 = peewee.CharField(max_length=128, null=True)
        car_size = peewee.BigIntegerField()
        padded_piece_size = peewee.BigIntegerField()
        car_version = peewee.IntegerField(default=1)
        blocks = peewee.BigIntegerField(default=0)
        files = peewee.BigIntegerField(default=0)
        sharded_files = peewee.BigIntegerField(default=0)
        bytes = peewee.BigIntegerField(default=0)
        created_at = peewee.DoubleField()
        seconds = peewee.DoubleField(default=0.0)
        host = peewee.CharField(max_length=128, default="")

    class DatasetFile(_Base):
        dataset_root = peewee.ForeignKeyField(DatasetRoot, on_delete="CASCADE")
        file = peewee.ForeignKeyField(File, null=True, on_delete="SET NULL")
        path = PathField()
        cid = peewee.CharField(max_length=128)

    db.create_tables([DatasetRoot, DatasetFile])


def _v7_project_profile(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """The CAR profile a project packs and builds with; every project before it was kubo's."""
    pm.migrate(migrator.add_column("project", "profile", peewee.CharField(max_length=16, default="kubo")))


def _v8_project_jobs(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """Scan and containerize run as detached jobs: their owner, heartbeat and cancel request."""
    pm.migrate(
        migrator.add_column("project", "job_owner", peewee.CharField(max_length=128, null=True)),
        migrator.add_column("project", "job_at", peewee.DoubleField(null=True)),
        migrator.add_column("project", "job_cancel", peewee.BooleanField(default=False)),
    )


# The references whose checks cost PostgreSQL most of a bulk load: a row-level trigger per row that locks the
# parent row (FOR KEY SHARE), measured at 1M rows as 12.2 s of a COPY of container items that takes 2.6 s
# without, 12.9 s against 5.4 s for files. The code deletes children first everywhere (tests/conftest checks
# the PostgreSQL stores of the whole suite for orphans); SQLite keeps them (its checks are cheap, and off
# during its bulk writes anyway).
BULK_REFERENCES = {"file": ("project", "directory"), "container_item": ("container", "file")}


def _v9_no_bulk_foreign_keys_on_postgres(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """PostgreSQL: drop the foreign keys of the two tables bulk loads fill (file, container_item)."""
    if not isinstance(db, peewee.PostgresqlDatabase):
        return
    for table, parents in BULK_REFERENCES.items():
        names = [name for (name,) in db.execute_sql(
            "SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid = %s::regclass "
            "AND confrelid::regclass::text = ANY(%s)", (table, list(parents))).fetchall()]
        for name in names:
            db.execute_sql(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')  # names read from the catalogue


# MIGRATIONS[n] brings a store from version n to n + 1. Append only.
MIGRATIONS: list[Step] = [
    _v1_create,
    _v2_s3_source,
    _v3_serve_tables,
    _v4_supervision_and_fencing,
    _v5_project_car_version,
    _v6_dataset_roots,
    _v7_project_profile,
    _v8_project_jobs,
    _v9_no_bulk_foreign_keys_on_postgres,
]
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(db: peewee.Database) -> int:
    if not db.table_exists(models.Meta._meta.table_name):
        return 0
    row = models.Meta.get_or_none(models.Meta.key == "schema_version")
    return int(row.value) if row else 0


def migrate(db: peewee.Database) -> int:
    """Bring the store up to SCHEMA_VERSION, one step per transaction; return the version reached."""
    version = current_version(db)
    if version > SCHEMA_VERSION:
        raise UsageError(
            f"this database has schema version {version}, newer than this ptolemy understands ({SCHEMA_VERSION}); "
            "upgrade ptolemy or point --db at another database"
        )
    if version == SCHEMA_VERSION:
        return version
    migrator = SchemaMigrator.from_database(db)
    with _foreign_keys_off_on_sqlite(db):
        while version < SCHEMA_VERSION:
            with db.atomic():
                MIGRATIONS[version](db, migrator)
                version += 1
                models.Meta.insert(key="schema_version", value=str(version)).on_conflict(
                    conflict_target=[models.Meta.key], update={models.Meta.value: str(version)}
                ).execute()
    return version


@contextlib.contextmanager
def _foreign_keys_off_on_sqlite(db: peewee.Database) -> Iterator[None]:
    """SQLite alters a column by copying the table and dropping the old one; with foreign keys on, that drop
    cascades and deletes every row that points at the table (a CAR's entries, a container's items). So steps
    run with foreign keys off (a pragma that only works outside a transaction), and the references are
    checked before they are turned back on."""
    if not isinstance(db, peewee.SqliteDatabase):
        yield
        return
    db.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        yield
        broken = db.execute_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"a migration left {len(broken)} broken references, first {broken[0]}")
    finally:
        db.execute_sql("PRAGMA foreign_keys = ON")
