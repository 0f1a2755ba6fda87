"""A built CAR whose source changed afterwards: marked stale wherever the CAR appears, and repacked by a plain
`containerize` (no --reset --discard-built) so the next build makes a fresh CAR of what changed."""
from __future__ import annotations

import csv
import io
import json
import os

from ptolemy_tui.services import build, containerize, projects, results, scan
from ptolemy_tui.store.models import Car, Container, Project
from tests.cli.helpers import run_cli
from tests.services.pipeline_helpers import new_project, write
from tests.worker.buildkit import fast_timings, reap_workers, wait_for_build


def _build(project):
    build.start_build(project, workers=1)
    doc = wait_for_build(project.name)
    reap_workers()
    assert doc["status"] == "built", doc


def test_stale_cars_show_everywhere_and_containerize_repacks_them(store, store_url, tmp_path, monkeypatch, capsys):
    fast_timings(monkeypatch)
    src = tmp_path / "src"
    src.mkdir()
    write(src / "a.bin", 1000)
    write(src / "b.bin", 2000)
    project = new_project(tmp_path)
    scan.run_scan(project)
    containerize.containerize(Project.get_by_id(project.id))
    _build(Project.get_by_id(project.id))
    [old] = Car.select()

    with open(src / "a.bin", "r+b") as fh:  # rewritten in place: same size, other bytes
        fh.write(b"\x02" * 1000)
    os.utime(src / "a.bin", ns=(1, 1_000_000_000))
    scan.run_scan(Project.get_by_id(project.id))
    assert Car.get_by_id(old.id).stale_reason.startswith("source changed or removed since the build: a.bin")

    [car] = results.list_cars(project.name)
    assert car["stale"] and "a.bin" in car["stale_reason"]
    rows = list(csv.DictReader(io.StringIO(results.manifest(project.name))))
    assert rows[0]["stale"] == "True"
    assert list(csv.DictReader(io.StringIO(results.manifest(project.name, exclude_stale=True)))) == []
    assert results.verify(project.name)[0]["stale"] is True
    assert projects.counts(Project.get_by_id(project.id))["cars_stale"] == 1
    r = run_cli(capsys, "--db", store_url, "manifest", "p", "--exclude-stale", "--format", "json")
    assert json.loads(r.out)["cars"] == []
    r = run_cli(capsys, "--db", store_url, "cars", "p")
    assert "STALE" in r.out and "1 CAR(s) stale" in r.err
    r = run_cli(capsys, "--db", store_url, "status", "p")
    assert "1 stale" in r.out

    # A plain containerize packs the stale container's files again; the stale CAR's record stays.
    report = containerize.containerize(Project.get_by_id(project.id))
    assert report["new_containers"] == 1 and report["files"] == 2
    _build(Project.get_by_id(project.id))
    cars = results.list_cars(project.name)
    assert [c["stale"] for c in cars] == [True, False]
    assert cars[0]["payload_cid"] == old.payload_cid and cars[1]["payload_cid"] != old.payload_cid
    fresh = list(csv.DictReader(io.StringIO(results.manifest(project.name, exclude_stale=True))))
    assert [r["payload_cid"] for r in fresh] == [cars[1]["payload_cid"]]
    assert Container.select().where(Container.state == "built").count() == 2
    assert all(r["ok"] for r in results.verify(project.name))


def test_hostile_names_print_escaped_and_unambiguous(store, store_url, tmp_path, monkeypatch, capsys):
    """ESC sequences, newlines, U+202E and a literal backslash-x never reach the terminal raw, two different
    names never print alike, and JSON carries the exact bytes."""
    fast_timings(monkeypatch)
    src = tmp_path / "src"
    src.mkdir()
    names = [b"a\x01", b"a\\x01", b"title\x1b]0;owned\x07", b"line\nbreak", "rev\u202etxt".encode(), b"bad\xff"]
    for name in names:
        write(os.path.join(os.fsencode(src), name), 10)
    project = new_project(tmp_path)
    scan.run_scan(project)
    containerize.containerize(Project.get_by_id(project.id))
    _build(Project.get_by_id(project.id))
    for argv in (("files", "p"), ("container", "p", str(Container.get().id)), ("containers", "p"), ("cars", "p")):
        r = run_cli(capsys, "--db", store_url, *argv)
        assert r.code == 0, r.err
        for bad in ("\x01", "\x1b", "\x07", "\u202e", "\udcff"):
            assert bad not in r.out, (argv, r.out)
    r = run_cli(capsys, "--db", store_url, "files", "p")
    lines = r.out.splitlines()
    assert len(lines) == len(names)  # a newline in a name does not break a row
    shown = [line.split("\t")[0] for line in lines]
    assert len(set(shown)) == len(names) and "a\\x01" in shown and "a\\\\x01" in shown
    r = run_cli(capsys, "--db", store_url, "files", "p", "--json")
    rows = json.loads(r.out)["files"]
    exact = {bytes.fromhex(row["path_hex"]) if "path_hex" in row else row["path"].encode() for row in rows}
    assert exact == set(names)
    r = run_cli(capsys, "--db", store_url, "container", "p", str(Container.get().id), "--json")
    items = json.loads(r.out)["items"]
    assert {bytes.fromhex(i["car_path_hex"]) if "car_path_hex" in i else i["car_path"].encode()
            for i in items} == set(names)
    assert all("source_hex" in i for i in items if "car_path_hex" in i)
