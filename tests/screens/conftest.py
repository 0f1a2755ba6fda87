from __future__ import annotations

import pytest

from tests.screens import helpers


@pytest.fixture
def project(sqlite_store, tmp_path):
    """A project on the demo tree in a real SQLite store (nothing scanned yet)."""
    return helpers.make_project(tmp_path)


@pytest.fixture
def packed_project(project):
    helpers.scan(project)
    helpers.containerize(project)
    return project
