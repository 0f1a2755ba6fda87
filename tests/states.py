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
