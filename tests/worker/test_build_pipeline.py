"""The real pipeline — scan, containerize, build — on a mixed tree (nested directories, empty and multi-chunk
files, a file split into shards, a symlink, quotes and non-UTF-8 bytes in names): each CAR equals what
`ptolemy car create` / the two-pass way writes for the same entries."""
from __future__ import annotations

import json
import os

from ptolemy_tui.services import build, containerize, projects, results, scan
from ptolemy_tui.store.models import Car, CarEntry, Container
from tests.cli.helpers import run_ptolemy
from tests.worker.buildkit import fast_timings, make_tree, reap_workers, reference_car, wait_for_build


def _tree(tmp_path):
    src = make_tree(tmp_path / "src", big=2_500_000)
    os.symlink("docs/readme.md", src / "link-to-readme")
    return src


def _project(name, src, staging, car_size, shard_size="1MiB"):
    project, _ = projects.create(projects.ProjectSpec(name, str(src), str(staging), car_size=car_size,
                                                      shard_size=shard_size, workers=2))
    scan.run_scan(project)
    containerize.containerize(projects.get(name))
    return projects.get(name)


def test_scanned_and_packed_tree_builds_into_the_reference_cars(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    src = _tree(tmp_path)
    project = _project("real", src, tmp_path / "stg", "2MiB")
    boxes = list(Container.select().where(Container.project == project).order_by(Container.seq))
    assert len(boxes) >= 2 and any(b.shard_count for b in boxes)
    build.start_build(project, workers=2)
    doc = wait_for_build("real")
    reap_workers()
    assert doc["status"] == "built", doc
    for box in boxes:
        car = Car.get(Car.container == box)
        root, piece, data = reference_car(box, src, tmp_path / f"ref{box.seq}.car")
        assert (car.payload_cid, car.piece_cid) == (root, piece)
        with open(car.path, "rb") as fh:
            assert fh.read() == data
        assert car.car_size == box.predicted_size  # the packer's exact prediction held
    files = results.list_files(project)
    assert {f["path"] for f in files} >= {"big.bin.ptolemy0", "big.bin.ptolemy2", "link-to-readme",
                                          "latin1-\\xe9.dat", "with 'quote\" and space.txt"}
    assert CarEntry.select().count() == len(files)


def test_one_container_equals_ptolemy_car_create(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    src = _tree(tmp_path)
    project = _project("whole", src, tmp_path / "stg", "1GiB", shard_size="4MiB")  # no shards: car create has none
    assert Container.select().count() == 1
    build.start_build(project)
    assert wait_for_build("whole")["status"] == "built"
    reap_workers()
    car = Car.get()
    out = tmp_path / "cli.car"
    tops = sorted(os.path.join(src, n) for n in os.listdir(src))
    r = run_ptolemy("car", "create", *tops, "-o", str(out), "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert (doc["root_cid"], doc["piece_cid"], doc["car_size"]) == (car.payload_cid, car.piece_cid, car.car_size)
    with open(car.path, "rb") as a:
        assert a.read() == out.read_bytes()
