"""services.dag on both stores (SQLite, PostgreSQL): scan → containerize → build (real workers) → dag →
restore, in-process; a second `dag` with nothing changed records nothing new."""
from __future__ import annotations

import os

from ptolemy_tui.services import build, containerize, dag, projects, restore, results, scan
from ptolemy_tui.store.models import DatasetFile, DatasetRoot
from tests.cli.test_dag_restore import assert_same_tree
from tests.worker.buildkit import fast_timings, make_tree, reap_workers, wait_for_build


def test_dag_service_and_restore(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    src = make_tree(tmp_path / "src", big=2_500_000)
    os.symlink("docs/readme.md", src / "link")
    (src / "docs" / "empty-dir").mkdir()
    project, _ = projects.create(projects.ProjectSpec("svc", str(src), str(tmp_path / "stg"), car_size="2MiB",
                                                      shard_size="1MiB", workers=2))
    scan.run_scan(project)
    containerize.containerize(projects.get("svc"))
    build.start_build(projects.get("svc"), workers=2)
    assert wait_for_build("svc")["status"] == "built"
    reap_workers()
    doc = dag.build_dag("svc")
    assert doc["sharded_files"] == 1 and not doc["unchanged"] and doc["previous_root"] is None
    whole = DatasetFile.get()
    assert whole.path == b"big.bin" and whole.file.path == b"big.bin"
    assert projects.summary(projects.get("svc"))["dataset_root"] == doc["root_cid"]
    assert all(r["ok"] for r in results.verify("svc")), results.verify("svc")
    report = restore.restore([str(tmp_path / "stg" / "svc")], str(tmp_path / "out"), verify_against=str(src))
    assert report.root == doc["root_cid"] and report.differences == []
    assert_same_tree(src, tmp_path / "out")
    again = dag.build_dag("svc")
    assert again["unchanged"] and again["root_cid"] == doc["root_cid"] and DatasetRoot.select().count() == 1
