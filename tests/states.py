"""Test set-up only: put a project in a status directly, as a store left by any earlier step would hold it.
Production code moves a project only through store/transitions.py, whose preconditions this skips."""
from __future__ import annotations

from ptolemy_tui.core.states import ProjectStatus
from ptolemy_tui.store.models import Project, now


def force_status(project: Project, status: str, message: str | None = None) -> None:
    status = ProjectStatus(status)
    project.status, project.message, project.updated_at = status, message, now()
    Project.update(status=status, message=message, updated_at=project.updated_at).where(
        Project.id == project.id).execute()


def unknown_states() -> list[str]:
    """Every state value the store holds that its enum lacks, as "table.column=value"."""
    from ptolemy_tui.core.states import ContainerState, ScanState, WorkerState
    from ptolemy_tui.store.models import Container, Scan, Worker

    found = []
    for model, column, enum in ((Project, Project.status, ProjectStatus), (Scan, Scan.state, ScanState),
                                (Container, Container.state, ContainerState), (Worker, Worker.state, WorkerState)):
        known = [member.value for member in enum]
        for (value,) in model.select(column).where(column.not_in(known)).distinct().tuples():
            found.append(f"{model._meta.table_name}.{column.name}={value!r}")
    return found


def orphans() -> list[str]:
    """Rows of the bulk tables whose parent is gone, as "table.column: n". PostgreSQL stores have no foreign
    keys there (store/schema.BULK_REFERENCES), so the code's own child-first deletes are what keeps them whole."""
    from ptolemy_tui.store.models import Container, ContainerItem, Directory, File, database

    checks = ((File, File.project, Project), (File, File.directory, Directory),
              (ContainerItem, ContainerItem.container, Container), (ContainerItem, ContainerItem.file, File))
    found = []
    for model, column, parent in checks:
        sql = (f'SELECT COUNT(*) FROM "{model._meta.table_name}" c WHERE c."{column.column_name}" IS NOT NULL AND '
               f'NOT EXISTS (SELECT 1 FROM "{parent._meta.table_name}" p WHERE p."id" = c."{column.column_name}")')
        count = database.execute_sql(sql).fetchone()[0]
        if count:
            found.append(f"{model._meta.table_name}.{column.column_name}: {count}")
    return found
