"""The scan view's tree queries on SQLite and PostgreSQL: children with aggregates, sorting, paging, errors."""
from __future__ import annotations

import pytest

from ptolemy_tui.errors import UsageError
from ptolemy_tui.services import scan, tree
from ptolemy_tui.store.models import Project
from tests.services.pipeline_helpers import deny_listing, make_tree, new_project, write


@pytest.fixture
def scanned(store, tmp_path, request, monkeypatch):
    info = make_tree(tmp_path / "src")
    (tmp_path / "src" / "locked").mkdir()
    big = tmp_path / "src" / "big"
    big.mkdir()
    for n in range(25):
        write(big / f"f{n:02d}", n * 10)
    deny_listing(request, monkeypatch, scan, tmp_path / "src" / "locked")
    project = new_project(tmp_path)
    scan.run_scan(project, walker_mode="threads")
    return Project.get_by_id(project.id), info


def test_root_children_with_aggregates(scanned):
    project, info = scanned
    rows = tree.children(project, None)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) >= {"docs", "empty-dir", "big", "locked", "top.bin", "link-to-top"}
    docs = by_name["docs"]
    assert docs["kind"] == "dir" and docs["files"] == 8 and docs["dir_count"] == 1
    assert by_name["big"]["size"] == sum(n * 10 for n in range(25)) and by_name["big"]["file_count"] == 25
    assert by_name["top.bin"] == {**by_name["top.bin"], "kind": "file", "size": 3000, "files": 1}
    assert by_name["link-to-top"]["link_target"] == "top.bin"
    sizes = [r["size"] for r in rows]
    assert sizes == sorted(sizes, reverse=True), "biggest first"
    names = [r["name"] for r in tree.children(project, None, sort="name")]
    assert names == sorted(names)


def test_paging_and_subdirectory(scanned):
    project, _ = scanned
    big = next(r for r in tree.children(project, None) if r["name"] == "big")
    page1 = tree.children(project, big["id"], sort="name", limit=10)
    page3 = tree.children(project, big["id"], sort="name", offset=20, limit=10)
    assert [r["name"] for r in page1] == [f"f{n:02d}" for n in range(10)]
    assert [r["name"] for r in page3] == [f"f{n:02d}" for n in range(20, 25)]
    assert tree.describe(project, big["id"])["size"] == big["size"]
    with pytest.raises(UsageError, match="unknown sort"):
        tree.children(project, None, sort="mtime")
    with pytest.raises(UsageError, match="no directory"):
        tree.children(project, 10**9)


@pytest.mark.parametrize("sort", ["size", "name"])
def test_keyset_pages_walk_every_entry_once_in_order(scanned, sort):
    """Paging by the last row's cursor gives exactly what one big page gives, for both orders, including
    entries whose sizes tie (the root holds several empty ones)."""
    project, _ = scanned
    for parent in (None, next(r for r in tree.children(project, None) if r["name"] == "big")["id"]):
        whole = tree.children(project, parent, sort=sort, limit=1000)
        paged, after = [], None
        while True:
            page = tree.children(project, parent, sort=sort, limit=3, after=after)
            paged += page
            if len(page) < 3:
                break
            after = page[-1]["cursor"]
        assert [(r["kind"], r["id"]) for r in paged] == [(r["kind"], r["id"]) for r in whole]
        assert len(whole) > 3


def test_odd_names_are_shown_escaped(scanned):
    project, _ = scanned
    docs = next(r for r in tree.children(project, None) if r["name"] == "docs")
    names = {r["name"] for r in tree.children(project, docs["id"], limit=100)}
    assert "\\xff\\xfe-not-utf8" in names and "café space.txt" in names and "new\\nline" in names  # one rule: core.display escapes a newline


def test_scan_errors_and_skipped(scanned):
    project, info = scanned
    errors = tree.scan_errors(project)
    assert errors == [{"path": "locked", "kind": "dir", "error": "Permission denied"}]
    skipped = {r["path"] for r in tree.skipped(project)}
    assert "docs/pipe" in skipped and len(skipped) == 1 + info["sockets"]
