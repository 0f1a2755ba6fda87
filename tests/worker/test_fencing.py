"""Fencing: a worker frozen past its lease at any point of its claim (SIGSTOP at a fault point), while a second
worker takes the container over, never touches the second worker's files or record when it resumes: one
complete CAR, one record, built by the second worker, nothing else left in staging."""
from __future__ import annotations

import os

import pytest

from ptolemy_tui.services import build, results
from ptolemy_tui.store.models import Car, Container, Event
from tests.worker.buildkit import (fast_timings, reap_workers, reference_car, seed_project, wait_for_build, wait_until,
                                   worker_logs)
from tests.worker.faultkit import arm, disarm, resume, wait_stopped

POINTS = ["after-claim", "mid-write", "before-rename", "after-rename", "before-record"]


@pytest.mark.parametrize("point", POINTS)
def test_a_worker_frozen_past_its_lease_touches_nothing_of_its_successor(store, tmp_path, monkeypatch, point):
    fast_timings(monkeypatch)
    monkeypatch.setenv("PTOLEMY_READ_RATE", "16MiB")  # the successor takes ~1.5 s: it is mid-write when A wakes
    src = tmp_path / "src"
    src.mkdir()
    (src / "one.bin").write_bytes(os.urandom(24 << 20))
    staging = tmp_path / "staging"
    project = seed_project("fence", src, staging, per_container=32 << 20, shard_size=32 << 20)
    [box] = Container.select()
    faults_dir = arm(monkeypatch, point, tmp_path / "faults")
    build.start_build(project, workers=2)  # one container: the supervisor starts one worker ...
    disarm(monkeypatch)
    frozen = wait_stopped(faults_dir, point)
    build.set_build_workers("fence", 2)  # ... and a second one now, the successor (the fault fires once only)
    successor_part = staging / "fence" / f"container-{box.seq:06d}.g2.part"
    try:
        # The lease of the frozen worker runs out; the other one reclaims (generation 2) and writes its own file.
        taken = wait_until(lambda: (lambda c: c if c.generation == 2 and c.state == "building" else None)(
            Container.get_by_id(box.id)), timeout=60, what="the container taken over")
        assert f":{frozen}:" not in taken.claimed_by
        wait_until(lambda: successor_part.exists() and successor_part.stat().st_size > (2 << 20), timeout=60,
                   what="the successor writing its part")
        inode = successor_part.stat().st_ino
    finally:
        resume(frozen)
    # The frozen worker wakes up mid-claim: whatever it does next must leave the successor's work alone.
    doc = wait_for_build("fence", timeout=90)
    reap_workers(60)
    assert doc["status"] == "built", (doc, worker_logs())
    [car] = Car.select()
    box = Container.get_by_id(box.id)
    assert box.state == "built" and box.generation == 2 and box.attempts == 2
    assert f":{frozen}:" not in box.claimed_by
    assert sorted(os.listdir(staging / "fence")) == [os.path.basename(car.path)], "one CAR, no partial file"
    root, piece, data = reference_car(box, src, tmp_path / "reference.car")
    assert (car.payload_cid, car.piece_cid) == (root, piece)
    assert open(car.path, "rb").read() == data, "the CAR is complete and exact"
    assert Event.select().where(Event.text.contains(f"container {box.seq} built")).count() == 1
    failures = [e.text for e in Event.select().where(Event.level == "error")]
    assert not failures, (failures, worker_logs())
    assert all(r["ok"] for r in results.verify(project))
