"""The build supervisor: a worker killed with -9 is replaced (with the reason logged), `build NAME --workers N`
changes a running build's worker count, and two builds started at once never both start workers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from ptolemy_tui.services import build, results
from ptolemy_tui.store.models import Car, Container, Event, Project
from tests.worker.buildkit import fast_timings, reap_workers, seed_project, wait_for_build, wait_until, worker_logs
from tests.worker.faultkit import arm, disarm, wait_stopped


def _tree(root, n: int, size: int = 8 << 20):
    root.mkdir()
    for i in range(n):
        (root / f"f{i}.bin").write_bytes(os.urandom(size))
    return root


def _live_pids(name: str) -> set[int]:
    return {w["pid"] for w in build.build_progress(name)["workers"]}


def test_a_worker_killed_with_9_is_replaced(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    monkeypatch.setenv("PTOLEMY_READ_RATE", "16MiB")
    project = seed_project("heal", _tree(tmp_path / "src", 6), tmp_path / "staging", per_container=8 << 20,
                           shard_size=16 << 20)
    faults_dir = arm(monkeypatch, "mid-write", tmp_path / "faults")
    first = set(build.start_build(project, workers=2))
    disarm(monkeypatch)
    victim = wait_stopped(faults_dir, "mid-write")
    assert victim in first
    os.kill(victim, signal.SIGKILL)
    replacement = wait_until(lambda: (_live_pids("heal") - first) or None, timeout=60,
                             what="a replacement worker")
    assert len(replacement) == 1 and victim not in _live_pids("heal")
    doc = wait_for_build("heal", timeout=120)
    reap_workers(60)
    assert doc["status"] == "built", (doc, worker_logs())
    assert Car.select().count() == 6
    [died] = Event.select().where(Event.text.contains(f"worker pid {victim} killed by SIGKILL"))
    assert "starting a replacement" in died.text
    assert all(r["ok"] for r in results.verify(project))
    assert Project.get_by_id(project.id).supervisor is None  # the supervisor gave the project back


def test_build_workers_n_changes_a_running_build(store, store_url, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    monkeypatch.setenv("PTOLEMY_READ_RATE", "8MiB")
    project = seed_project("resize", _tree(tmp_path / "src", 8, 4 << 20), tmp_path / "staging",
                           per_container=4 << 20, shard_size=16 << 20)
    build.start_build(project, workers=1)
    env = dict(os.environ, PTOLEMY_DB=store_url)
    r = subprocess.run([sys.executable, "-m", "ptolemy_tui", "build", "resize", "--workers", "3"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and "now keeps 3 worker(s)" in r.stdout, r.stderr
    wait_until(lambda: len(_live_pids("resize")) == 3, timeout=60, what="three live workers")
    assert build.set_build_workers("resize", 1) == 1
    wait_until(lambda: len([w for w in build.build_progress("resize")["workers"]]) == 1, timeout=60,
               what="one live worker")
    doc = wait_for_build("resize", timeout=120)
    reap_workers(60)
    assert doc["status"] == "built", (doc, worker_logs())
    assert Car.select().count() == 8 and Container.select().where(Container.state == "built").count() == 8


def test_two_builds_started_at_once_start_workers_once(store, store_url, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    monkeypatch.setenv("PTOLEMY_READ_RATE", "16MiB")
    seed_project("twice", _tree(tmp_path / "src", 4, 4 << 20), tmp_path / "staging", per_container=4 << 20,
                 shard_size=16 << 20)
    env = dict(os.environ, PTOLEMY_DB=store_url)
    procs = [subprocess.Popen([sys.executable, "-m", "ptolemy_tui", "build", "twice"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = next(err for (out, err), p in zip(outs, procs) if p.returncode == 2)
    assert "already running" in loser or "at the same moment" in loser, loser
    assert loser.count("\n") == 1
    doc = wait_for_build("twice", timeout=120)
    assert doc["status"] == "built", (doc, worker_logs())
    assert Event.select().where(Event.text.startswith("build started")).count() == 1
    wait_until(lambda: Project.get(Project.name == "twice").supervisor is None, timeout=60,
               what="the supervisor to finish")
