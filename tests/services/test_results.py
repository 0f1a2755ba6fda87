"""The results service on a built project: CAR list, manifest, file ↔ CID map and verification."""
from __future__ import annotations

import csv
import io
import json
import os

import pytest

from ptolemy_tui.errors import UsageError
from ptolemy_tui.services import build, results
from ptolemy_tui.store.models import Car, CarEntry, Container, ContainerItem
from tests.worker.buildkit import fast_timings, make_tree, reap_workers, seed_project, wait_for_build


@pytest.fixture
def built(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    src = make_tree(tmp_path / "src")
    project = seed_project("r", src, tmp_path / "stg")
    build.start_build(project)
    assert wait_for_build("r")["status"] == "built"
    reap_workers()
    return project


def test_cars_and_manifest(built):
    cars = results.list_cars(built)
    assert [c["container"] for c in cars] == sorted(c.seq for c in Container.select())
    assert all(os.path.basename(c["path"]) == c["piece_cid"] + ".car" for c in cars)
    rows = list(csv.DictReader(io.StringIO(results.manifest(built, "csv"))))
    assert list(rows[0]) == list(results.MANIFEST_KEYS)
    assert [r["commp"] for r in rows] == [c["piece_cid"] for c in cars]
    doc = json.loads(results.manifest("r", "json"))
    assert doc["cars"][0]["size"] == cars[0]["car_size"]
    with pytest.raises(UsageError, match="use csv or json"):
        results.manifest(built, "xml")


def test_files_map_every_item_with_exact_names(built):
    files = results.list_files(built)
    assert len(files) == ContainerItem.select().count() == CarEntry.select().count()
    paths = {f["path"] for f in files}
    assert "latin1-\\xe9.dat" in paths  # undecodable bytes shown escaped, never an exception
    shard = next(f for f in files if f["path"] == "big.bin.ptolemy0")
    assert shard["shard_index"] == 0 and shard["offset"] == 0 and shard["source"] == "big.bin"
    assert all(f["cid"].startswith("baf") for f in files)


def test_verify_reports_each_problem(built):
    assert all(r["ok"] for r in results.verify(built))
    first, second = list(Car.select().order_by(Car.id))[:2]
    os.unlink(first.path)
    Car.update(piece_cid="baga6ea4seaqwrong").where(Car.id == second.id).execute()
    report = {r["container"]: r for r in results.verify(built)}
    # a CAR gone from staging is reported moved (not verified, not bad): the operator may have offloaded it
    assert report[first.container.seq]["ok"] is None
    assert "not in staging any more" in report[first.container.seq]["problems"][0]
    assert any("recorded baga6ea4seaqwrong" in p for p in report[second.container.seq]["problems"])
    assert [r["container"] for r in report.values() if r["ok"] is False] == [second.container.seq]
