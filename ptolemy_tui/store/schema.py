"""Schema version and forward migrations. A store written by a newer Ptolemy is refused, never guessed at."""
from __future__ import annotations

from typing import Callable

import peewee

from ptolemy_tui.errors import UsageError
from ptolemy_tui.store import models


def _create_v1(db: peewee.Database) -> None:
    db.create_tables(models.ALL_MODELS, safe=True)


# MIGRATIONS[n] brings a store from version n to n + 1. Append only; never edit a released step.
MIGRATIONS: list[Callable[[peewee.Database], None]] = [_create_v1]
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(db: peewee.Database) -> int:
    if not db.table_exists(models.Meta._meta.table_name):
        return 0
    row = models.Meta.get_or_none(models.Meta.key == "schema_version")
    return int(row.value) if row else 0


def migrate(db: peewee.Database) -> int:
    version = current_version(db)
    if version > SCHEMA_VERSION:
        raise UsageError(
            f"this database has schema version {version}, newer than this ptolemy understands ({SCHEMA_VERSION}); "
            "upgrade ptolemy or point --db at another database"
        )
    while version < SCHEMA_VERSION:
        with db.atomic():
            MIGRATIONS[version](db)
            version += 1
            models.Meta.insert(key="schema_version", value=str(version)).on_conflict(
                conflict_target=[models.Meta.key], update={models.Meta.value: str(version)}
            ).execute()
    return version
