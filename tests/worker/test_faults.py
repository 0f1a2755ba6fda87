"""Builds under faults, with real worker subprocesses: a worker killed with -9 mid-CAR, a source file changed
or removed after the scan, a PostgreSQL restart in the middle of a build."""
from __future__ import annotations

import os
import signal
import time

import pytest

from ptolemy_tui.services import build, results
from ptolemy_tui.store.models import Car, Container, Event, Project
from ptolemy_tui.worker import dbretry
from tests.worker.buildkit import (fast_timings, make_tree, reap_workers, seed_project, wait_for_build, wait_until,
                                   worker_logs)


def _big_tree(root, n: int = 4, size: int = 24 << 20):
    root.mkdir()
    for i in range(n):
        (root / f"part{i}.bin").write_bytes(os.urandom(size))
    return root


def _slow_reads(monkeypatch) -> None:
    """Workers read 16 MiB/s, so a 24 MiB container takes about 1.5 s: a window the test can always hit."""
    monkeypatch.setenv("PTOLEMY_READ_RATE", "16MiB")


def _partial(project_dir, project):
    """A container half written: its .part exists and holds data, and its claim is live."""
    for name in os.listdir(project_dir) if project_dir.exists() else ():
        try:
            if name.endswith(".part") and os.path.getsize(project_dir / name) > (1 << 20):
                seq = int(name.split("-")[1].split(".")[0])
                box = Container.get((Container.project == project.id) & (Container.seq == seq))
                if box.state == "building" and box.claimed_by:
                    return box
        except FileNotFoundError:
            continue
    return None


def test_worker_killed_mid_car_is_taken_over(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    _slow_reads(monkeypatch)
    src = _big_tree(tmp_path / "src")
    staging = tmp_path / "staging"
    project = seed_project("crash", src, staging, per_container=24 << 20, shard_size=32 << 20)
    assert Container.select().count() == 4
    build.start_build(project, workers=2)

    victim = wait_until(lambda: _partial(staging / "crash", project), timeout=60, what="a partially written CAR")
    pid = int(victim.claimed_by.split(":")[1])
    os.kill(pid, signal.SIGSTOP)  # freeze it first so it cannot finish while we look
    assert Container.get_by_id(victim.id).state == "building", "the victim finished before it was stopped"
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    wait_until(lambda: pid not in [w["pid"] for w in build.build_progress("crash")["workers"]],
               what="the killed worker leaving the live view")
    doc = wait_for_build("crash", timeout=90)
    reap_workers()
    assert doc["status"] == "built", (doc, worker_logs())
    victim = Container.get_by_id(victim.id)
    assert victim.state == "built" and victim.attempts == 2
    assert f":{pid}:" not in victim.claimed_by, "another worker built it"
    assert Event.select().where(Event.text.contains(f"container {victim.seq} reclaimed")).count() == 1
    assert time.monotonic() - started < 60, "the expired lease was taken over within 60 s"
    # every container built exactly once: one CAR each, no partial file left, all verify
    assert Car.select().count() == 4
    assert sorted(os.listdir(staging / "crash")) == sorted(os.path.basename(c.path) for c in Car.select())
    assert all(r["ok"] for r in results.verify(project))


def test_sigterm_hands_the_container_back_at_once(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    monkeypatch.setenv("PTOLEMY_LEASE_SECONDS", "60")  # so only the worker's own release can requeue it
    _slow_reads(monkeypatch)
    src = _big_tree(tmp_path / "src", n=3)
    staging = tmp_path / "staging"
    project = seed_project("term", src, staging, per_container=24 << 20, shard_size=32 << 20)
    pid = build.start_build(project, workers=1)[0]
    box = wait_until(lambda: _partial(staging / "term", project), timeout=60, what="a partially written CAR")
    os.kill(pid, signal.SIGSTOP)
    assert Container.get_by_id(box.id).state == "building", "it finished before it was stopped"
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGCONT)
    reap_workers()
    box = Container.get_by_id(box.id)
    assert box.state == "pending" and box.claimed_by is None and box.attempts == 1
    assert not [n for n in os.listdir(staging / "term") if n.endswith(".part")]
    assert build.build_progress(project)["workers"] == []
    build.start_build(project, workers=1)  # the build goes on where it stopped
    assert wait_for_build("term")["status"] == "built"
    reap_workers()
    assert Car.select().count() == 3


@pytest.mark.parametrize("change", ["modified", "removed"])
def test_source_changed_after_scan_fails_its_container_only(store, tmp_path, monkeypatch, change):
    fast_timings(monkeypatch)
    src = make_tree(tmp_path / "src")
    staging = tmp_path / "staging"
    project = seed_project("changed", src, staging)
    target = src / "media" / "clip.raw"
    if change == "modified":
        with open(target, "ab") as fh:
            fh.write(b"more")
    else:
        target.unlink()
    build.start_build(project, workers=2)
    doc = wait_for_build("changed")
    reap_workers()
    assert doc["status"] == "failed" and doc["containers"]["failed"] == 1, doc
    bad = Container.get(Container.state == "failed")
    word = "source changed since scan" if change == "modified" else "source file vanished since scan"
    assert bad.error == f"{word}: media/clip.raw"
    assert not Car.select().where(Car.container == bad).exists()
    assert not [n for n in os.listdir(staging / "changed") if n.endswith(".part")]
    assert len(os.listdir(staging / "changed")) == doc["containers"]["built"]
    assert Project.get_by_id(project.id).status == "failed"
    assert Event.select().where(Event.text.contains(word)).count() == 1  # the failure's reason is kept
    # retry requeues it; it fails again until the tree is rescanned, and the attempt is counted
    assert build.retry(project) == 1
    assert Container.get_by_id(bad.id).state == "pending"
    build.start_build(project)
    doc = wait_for_build("changed")
    reap_workers()
    assert doc["status"] == "failed" and Container.get_by_id(bad.id).attempts == 2


def test_postgres_restart_during_a_build(pg_store, tmp_path, monkeypatch, pg_cluster_controls):
    if pg_cluster_controls is None:
        pytest.skip("the PostgreSQL server is not ours to restart")
    fast_timings(monkeypatch)
    monkeypatch.setenv("PTOLEMY_LEASE_SECONDS", "20")  # the restart must not look like dead workers
    _slow_reads(monkeypatch)
    src = _big_tree(tmp_path / "src", n=8, size=8 << 20)
    project = seed_project("restart", src, tmp_path / "staging", per_container=8 << 20, shard_size=16 << 20)
    build.start_build(project, workers=2)
    wait_until(lambda: dbretry.retrying(lambda: Container.select().where(Container.state == "built").count(),
                                        "polling") >= 1, what="a first CAR")
    pg_cluster_controls.restart()
    assert dbretry.retrying(lambda: Container.select().where(Container.state == "built").count(), "polling") < 8, \
        "the build ended before the restart: make it bigger"
    doc = dbretry.retrying(lambda: wait_for_build("restart", timeout=120), "waiting", patience=120)
    reap_workers()
    assert doc["status"] == "built", (doc, worker_logs())
    assert Car.select().count() == 8
    # The same two workers finished it: their connections died with the server and were replaced (transparently
    # by ReconnectingPostgres outside a transaction, by dbretry inside one), none of them crashed.
    logs = worker_logs()
    assert logs.count(" stopped") == 2 and "Traceback" not in logs, logs  # whole, for a failure seen once
    assert all(r["ok"] for r in results.verify(project))


def test_read_rate_caps_a_workers_source_reads(store, tmp_path, monkeypatch):
    """PTOLEMY_READ_RATE spares a shared NFS server: 16 MiB of sources at 8 MiB/s take at least about 2 s."""
    fast_timings(monkeypatch)
    monkeypatch.setenv("PTOLEMY_READ_RATE", "8MiB")
    src = _big_tree(tmp_path / "src", n=2, size=8 << 20)
    project = seed_project("paced", src, tmp_path / "staging", per_container=16 << 20, shard_size=32 << 20)
    build.start_build(project, workers=1)
    assert wait_for_build("paced")["status"] == "built"
    reap_workers()
    [box] = Container.select()
    assert box.finished_at - box.started_at >= 1.8  # a lower bound from sleeping: not a speed measurement
