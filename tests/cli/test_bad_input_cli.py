"""Hostile or mistaken input to the CLI: one line on stderr, exit 2, nothing written."""
from __future__ import annotations


import pytest

from tests.cli.helpers import run_cli
from tests.services.pipeline_helpers import make_tree


def _refused(r, *words):
    assert r.code == 2, (r.out, r.err)
    assert r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
    for word in words:
        assert word in r.err, r.err


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused(capsys, tmp_path, name):
    db = f"sqlite:///{tmp_path / 'p.db'}"
    make_tree(tmp_path / "src")
    staging = tmp_path / "stage" / "inner"
    r = run_cli(capsys, "--db", db, "project", "create", name, "--target", str(tmp_path / "src"),
                "--staging", str(staging))
    _refused(r, "project name")
    assert not staging.exists()
    r = run_cli(capsys, "--db", db, "project", "list", "--json")
    assert r.json()["projects"] == []


@pytest.mark.parametrize("ident", [str(1 << 63), str(10 ** 30), "-1", "0", "x"])
def test_container_ids_past_the_store_integer_are_one_line(capsys, tmp_path, ident):
    db = f"sqlite:///{tmp_path / 'p.db'}"
    make_tree(tmp_path / "src")
    r = run_cli(capsys, "--db", db, "project", "create", "p", "--target", str(tmp_path / "src"),
                "--staging", str(tmp_path / "stg"))
    assert r.code == 0, r.err
    r = run_cli(capsys, "--db", db, "container", "p", ident)
    _refused(r)


def test_container_id_past_2_63_in_the_service(store, tmp_path):
    from ptolemy_tui.errors import UsageError
    from ptolemy_tui.services import containerize
    from ptolemy_tui.store.models import Project

    project = Project.create(name="p", target_dir=str(tmp_path), staging_dir=str(tmp_path), car_size=1 << 30,
                             shard_size=1 << 20, workers=1)
    with pytest.raises(UsageError, match="has no container"):
        containerize.container_items(project, 1 << 64)
