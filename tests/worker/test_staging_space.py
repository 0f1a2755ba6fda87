"""A staging disk too small for the build, made real with a small tmpfs: serial builds wait for space (and for
the project's budget) and never overfill the disk; blitz refuses up front, and when forced fails cleanly."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from ptolemy_tui.errors import OperationFailed
from ptolemy_tui.services import build
from ptolemy_tui.store.models import Container, Worker
from tests.worker.buildkit import fast_timings, make_tree, reap_workers, seed_project, wait_for_build, worker_logs


@pytest.fixture
def tiny_fs(tmp_path):
    mounted = []

    def mount(size: str):
        path = tmp_path / f"tiny{len(mounted)}"
        path.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _drain_serial(name: str, staging_project_dir, moved_dir, timeout: float = 60) -> tuple[dict, list[dict]]:
    """Follow a serial build; whenever it waits for space, act as the operator: move the finished CARs away."""
    moved_dir.mkdir(exist_ok=True)
    waits = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = build.build_progress(name)
        if doc["finished"]:
            return doc, waits
        if doc["waiting"]:
            waits.append(doc["waiting"][0])
            for n in os.listdir(staging_project_dir):
                if n.endswith(".car"):
                    shutil.move(os.path.join(staging_project_dir, n), moved_dir / n)
        time.sleep(0.2)
    raise AssertionError(f"serial build did not finish: {build.build_progress(name)}\n{worker_logs()}")


def test_serial_waits_for_space_and_never_overfills(store, tmp_path, monkeypatch, tiny_fs):
    fast_timings(monkeypatch)
    staging = tiny_fs("1m")
    src = make_tree(tmp_path / "src")
    project = seed_project("small", src, staging, load_type="serial")
    predicted = sum(c.predicted_size for c in Container.select())
    assert predicted > (1 << 20) > 2 * max(c.predicted_size for c in Container.select())
    build.start_build(project)  # each CAR fits the disk; all of them do not
    doc, waits = _drain_serial("small", staging / "small", tmp_path / "moved")
    reap_workers()
    assert doc["status"] == "built", doc
    assert waits, "the worker never had to wait"
    w = waits[0]
    assert w["message"].startswith("waiting for staging space: disk ") and "free, next CAR needs" in w["message"]
    assert w["needed"] > w["free"] and w["total"] > 0
    assert Container.select().where(Container.state == "failed").count() == 0  # no ENOSPC ever
    assert Container.select().where(Container.attempts != 1).count() == 0
    assert len(os.listdir(tmp_path / "moved")) + len(os.listdir(staging / "small")) == Container.select().count()


def test_serial_keeps_within_the_staging_budget(store, tmp_path, monkeypatch):
    fast_timings(monkeypatch)
    src = make_tree(tmp_path / "src")
    staging = tmp_path / "staging"
    project = seed_project("budget", src, staging, load_type="serial", staging_budget=600_000)
    build.start_build(project)
    doc, waits = _drain_serial("budget", staging / "budget", tmp_path / "moved")
    reap_workers()
    assert doc["status"] == "built" and waits
    assert "budget" in waits[0]["message"] and waits[0]["budget"] == 600_000


def test_blitz_refuses_a_short_staging_disk_and_fails_cleanly_when_forced(store, tmp_path, monkeypatch, tiny_fs):
    fast_timings(monkeypatch)
    staging = tiny_fs("1m")
    src = make_tree(tmp_path / "src")
    project = seed_project("short", src, staging)
    with pytest.raises(OperationFailed) as info:
        build.start_build(project)
    text = str(info.value)
    assert "refusing to build short" in text and "free" in text and "--force" in text
    assert Worker.select().count() == 0
    build.start_build(project, force=True, workers=2)
    doc = wait_for_build("short")
    reap_workers()
    assert doc["status"] == "failed" and doc["containers"]["failed"] >= 1
    errors = [c.error for c in Container.select().where(Container.state == "failed")]
    assert all("no space left on the staging disk" in e for e in errors), errors
    assert not [n for n in os.listdir(staging / "short") if n.endswith(".part")], "partial files removed"
