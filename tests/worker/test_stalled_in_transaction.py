"""PostgreSQL: a worker frozen inside its claim transaction (holding the container row and a share lock on the
project row) must not hang the build or the operator: the server ends its idle transaction
(idle_in_transaction_session_timeout), the other worker takes the container, and `cancel` answers at once."""
from __future__ import annotations

import time

import pytest

from ptolemy_tui.services import build, results
from ptolemy_tui.store.models import Car, Container
from tests.cli.helpers import run_ptolemy
from tests.worker.buildkit import fast_timings, make_tree, reap_workers, seed_project, wait_for_build, worker_logs
from tests.worker.faultkit import arm, resume, wait_stopped

pytestmark = pytest.mark.postgres


def _setup(monkeypatch, tmp_path, name):
    fast_timings(monkeypatch)
    monkeypatch.setenv("PTOLEMY_PG_IDLE_TX_SECONDS", "2")
    src = make_tree(tmp_path / "src")
    project = seed_project(name, src, tmp_path / "staging")
    return project, arm(monkeypatch, "in-claim-transaction", tmp_path / "faults")


def test_the_build_finishes_around_a_worker_frozen_in_its_claim_transaction(pg_store, tmp_path, monkeypatch):
    project, faults_dir = _setup(monkeypatch, tmp_path, "frozen")
    total = Container.select().count()
    assert total >= 3
    build.start_build(project, workers=2)
    pid = wait_stopped(faults_dir, "in-claim-transaction")
    try:
        doc = wait_for_build("frozen", timeout=60)  # while the frozen worker is still stopped
        assert doc["status"] == "built", (doc, worker_logs())
        assert Car.select().count() == total
    finally:
        resume(pid)
    reap_workers()
    assert "Traceback" not in worker_logs()
    assert all(r["ok"] for r in results.verify(project))


def test_cancel_answers_while_a_worker_is_frozen_in_its_claim_transaction(pg_store, pg_store_url, tmp_path,
                                                                         monkeypatch):
    project, faults_dir = _setup(monkeypatch, tmp_path, "stuck")
    build.start_build(project, workers=1)
    pid = wait_stopped(faults_dir, "in-claim-transaction")
    try:
        started = time.monotonic()
        r = run_ptolemy("--db", pg_store_url, "cancel", "stuck", timeout=60)
        took = time.monotonic() - started
        assert r.code == 0, r.err
        assert took < 10, f"cancel took {took:.1f}s"
        r = run_ptolemy("--db", pg_store_url, "status", "stuck", timeout=30)
        assert r.code == 0, r.err
    finally:
        resume(pid)
    reap_workers()
    assert all(c.state == "pending" for c in Container.select())
