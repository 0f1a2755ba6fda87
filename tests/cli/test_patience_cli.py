"""Commands that follow a build ride out what the workers ride out: PostgreSQL down for a while is waited for,
saying "store unreachable, retrying", never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from ptolemy_tui.store.models import Car
from tests.worker.buildkit import fast_timings, reap_workers, seed_project, worker_logs

pytestmark = pytest.mark.postgres


def _lines(stream, into: list[str]) -> None:
    for line in iter(stream.readline, ""):
        into.append(line)


def test_build_wait_rides_out_postgres_down(pg_store, pg_store_url, tmp_path, monkeypatch, pg_cluster_controls):
    if pg_cluster_controls is None:
        pytest.skip("the PostgreSQL server is not ours to stop")
    fast_timings(monkeypatch)
    monkeypatch.setenv("PTOLEMY_LEASE_SECONDS", "30")  # the outage must not look like dead workers
    monkeypatch.setenv("PTOLEMY_READ_RATE", "16MiB")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}.bin").write_bytes(os.urandom(8 << 20))
    seed_project("patient", src, tmp_path / "staging", per_container=8 << 20, shard_size=16 << 20)
    proc = subprocess.Popen([sys.executable, "-m", "ptolemy_tui", "--db", pg_store_url, "build", "patient",
                             "--workers", "1", "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=_lines, args=(proc.stderr, err), daemon=True)]
    for t in readers:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while not any("build of patient started" in line for line in out):
            assert time.monotonic() < deadline and proc.poll() is None, (out, err)
            time.sleep(0.05)
        pg_cluster_controls.stop_server()
        try:
            deadline = time.monotonic() + 60
            while not any("store unreachable, retrying" in line for line in err):
                assert time.monotonic() < deadline and proc.poll() is None, (out, err)
                time.sleep(0.05)
        finally:
            pg_cluster_controls.start_server()
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        for t in readers:
            t.join(5)
    reap_workers()
    text = "".join(err)
    assert code == 0, (out, err, worker_logs())
    assert "Traceback" not in text and "patient: built" in "".join(out)
    from ptolemy_tui.worker import dbretry

    assert dbretry.retrying(lambda: Car.select().count(), "counting") == 6
