"""A source file rewritten in place (same size) while a worker reads it fails its container and leaves no CAR:
the worker is frozen at the mid-write fault point, the file is rewritten, the worker goes on."""
from __future__ import annotations

import os

from ptolemy_tui.services import build
from ptolemy_tui.store.models import Car, Container
from tests.worker.buildkit import fast_timings, reap_workers, seed_project, wait_for_build
from tests.worker.faultkit import arm, resume, wait_stopped


def test_a_file_rewritten_while_read_fails_its_container(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    monkeypatch.setenv("PTOLEMY_LEASE_SECONDS", "60")
    src = tmp_path / "src"
    src.mkdir()
    big = src / "big.bin"
    big.write_bytes(os.urandom(12 << 20))
    project = seed_project("rewrite", src, tmp_path / "staging", per_container=16 << 20, shard_size=16 << 20)
    faults_dir = arm(monkeypatch, "mid-write", tmp_path / "faults")
    build.start_build(project, workers=1)
    pid = wait_stopped(faults_dir, "mid-write")
    with open(big, "r+b") as fh:  # same size, other bytes, in place (same inode)
        fh.write(os.urandom(12 << 20))
    resume(pid)
    doc = wait_for_build("rewrite")
    reap_workers()
    assert doc["status"] == "failed", doc
    [box] = Container.select()
    assert box.state == "failed" and box.error == "source changed while reading: big.bin"
    assert Car.select().count() == 0
    assert os.listdir(tmp_path / "staging" / "rewrite") == []  # no CAR, no partial file
