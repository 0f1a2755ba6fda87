"""Claims: atomic, leased, renewed, reclaimed after expiry, one at a time for serial builds, and never shared by
racing worker processes (6 real processes on PostgreSQL and on SQLite)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from ptolemy_tui.store import models
from ptolemy_tui.store.models import Container, Event, Project
from ptolemy_tui.store import transitions as claims
from ptolemy_tui.store.transitions import Holder
from ptolemy_tui.worker.launch import store_url


def _project(n: int, **kw) -> Project:
    project = Project.create(name="p", target_dir="/src", staging_dir="/stg", car_size=1 << 30, shard_size=1 << 20,
                             workers=2, status="building", **kw)
    for seq in range(1, n + 1):
        Container.create(project=project, seq=seq, predicted_size=1000 * seq, data_bytes=900 * seq)
    return project


def test_claim_takes_lowest_pending_and_leases_it(store):
    project = _project(3)
    claim = claims.claim(project.id, "h:1:1", 30)
    assert claim.container.seq == 1 and claim.reclaimed_from is None
    box = Container.get_by_id(claim.container.id)
    assert box.state == "building" and box.claimed_by == "h:1:1" and box.attempts == 1
    assert 29 < box.lease_expires_at - time.time() <= 30
    assert claims.claim(project.id, "h:2:2", 30).container.seq == 2
    assert claims.renew(claim.holder, 30, 500)
    assert Container.get_by_id(box.id).bytes_done == 500
    assert not claims.renew(Holder(box.id, "h:2:2"), 30, 0), "only the owner renews"


def test_expired_lease_is_reclaimed_and_counted(store, monkeypatch):
    start = time.time()
    monkeypatch.setattr(models, "clock", lambda: start)
    project = _project(1)
    first = claims.claim(project.id, "h:1:1", 30)
    monkeypatch.setattr(models, "clock", lambda: start + 29.9)
    assert claims.claim(project.id, "h:2:2", 30) is None  # still leased
    monkeypatch.setattr(models, "clock", lambda: start + 30.1)  # the store's clock passes the lease: no sleep
    second = claims.claim(project.id, "h:2:2", 30)
    assert second.container.id == first.container.id and second.reclaimed_from == "h:1:1"
    assert Container.get_by_id(first.container.id).attempts == 2
    assert not claims.renew(first.holder, 30, 0), "the old owner learns it lost the claim"
    assert not claims.fail(first.holder, first.container, "late"), "and cannot record anything"
    assert Event.select().where(Event.text.contains("reclaimed")).count() == 1


def test_serial_claims_one_container_at_a_time(store):
    project = _project(2, load_type="serial")
    first = claims.claim(project.id, "h:1:1", 30, serial=True)
    assert claims.claim(project.id, "h:2:2", 30, serial=True) is None
    claims.fail(first.holder, first.container, "boom")
    assert claims.claim(project.id, "h:2:2", 30, serial=True).container.seq == 2


def test_finalize_when_nothing_is_left(store):
    project = _project(2)
    a = claims.claim(project.id, "h:1:1", 30)
    assert claims.finalize_build(project.id) is None
    claims.fail(a.holder, a.container, "source changed since scan: x")
    b = claims.claim(project.id, "h:1:1", 30)
    Container.update(state="built").where(Container.id == b.container.id).execute()
    assert claims.finalize_build(project.id) == "failed"
    assert "1 container(s) failed" in Project.get_by_id(project.id).message


RACER = r"""
import os, sys
from ptolemy_tui.store import db
from ptolemy_tui.store.models import Container
from ptolemy_tui.store import transitions as claims
db.open_database(os.environ["PTOLEMY_DB"])
owner = f"racer:{os.getpid()}"
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()  # start together
got = []
while True:
    claim = claims.claim(int(sys.argv[1]), owner, 60)
    if claim is None:
        break
    got.append(claim.container.id)
    Container.update(state="built").where(Container.id == claim.container.id).execute()
print(" ".join(map(str, got)))
"""


def test_racing_workers_never_claim_one_container_twice(store):
    project = _project(120)
    env = dict(os.environ, PTOLEMY_DB=store_url())
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(project.id)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(6)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    taken = []
    per_worker = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        ids = [int(x) for x in out.split()]
        per_worker.append(len(ids))
        taken += ids
    assert len(taken) == len(set(taken)) == 120, "a container was claimed twice or not at all"
    assert sum(1 for n in per_worker if n) >= 2, f"the claimers did not actually race: {per_worker}"
    assert set(Container.select(Container.attempts).tuples()) == {(1,)}


def test_six_workers_build_each_container_once(store, tmp_path, monkeypatch):
    from ptolemy_tui.services import build
    from ptolemy_tui.store.models import Car
    from tests.worker.buildkit import fast_timings, make_tree, reap_workers, seed_project, wait_for_build

    fast_timings(monkeypatch)
    src = make_tree(tmp_path / "src")
    project = seed_project("six", src, tmp_path / "stg", per_container=100_000, shard_size=64 * 1024)
    n = Container.select().count()
    assert n >= 12
    assert len(build.start_build(project, workers=6)) == 6
    assert wait_for_build("six", timeout=90)["status"] == "built"
    reap_workers()
    assert set(Container.select(Container.attempts).tuples()) == {(1,)}
    assert Car.select().count() == n
    claims_seen = [e.text.split()[1] for e in Event.select().where(Event.text.contains(" claimed by "))]
    assert sorted(claims_seen, key=int) == [str(s) for s in range(1, n + 1)]


def test_serial_build_stays_one_at_a_time_with_extra_workers(store, tmp_path, monkeypatch):
    """A second host joining a serial build (`ptolemy worker`) must not make it build two CARs at once."""
    from ptolemy_tui.services import build
    from ptolemy_tui.store.models import Car
    from tests.worker.buildkit import fast_timings, reap_workers, seed_project, wait_for_build

    fast_timings(monkeypatch)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}.bin").write_bytes(os.urandom(4 << 20))
    project = seed_project("ser", src, tmp_path / "stg", per_container=4 << 20, shard_size=8 << 20,
                           load_type="serial")
    build.start_build(project)
    env = dict(os.environ, PTOLEMY_DB=store_url())
    extra = [subprocess.Popen([sys.executable, "-m", "ptolemy_tui", "worker", "--project", "ser"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    assert wait_for_build("ser", timeout=90)["status"] == "built"
    reap_workers()
    for p in extra:
        p.wait(timeout=30)
    spans = sorted((c.started_at, c.finished_at) for c in Container.select())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "two containers were built at the same time"
    assert Car.select().count() == 6


def test_a_stop_between_claim_and_report_is_not_forgotten():
    """SIGTERM after a claim but before the reporter hears of it: the builder still sees it at its first read."""
    from ptolemy_tui.core.states import WorkerState
    from ptolemy_tui.worker.reporter import Reporter

    reporter = Reporter(1, "h:1:1", "/", 30, 1)
    reporter.set(WorkerState.IDLE)
    reporter.request_stop()  # the signal handler
    reporter.set(WorkerState.BUILDING, "container 1", holder=Holder(1, "h:1:1"), bytes_total=10)
    assert reporter.claim_lost.is_set() and reporter.stop_requested.is_set()
