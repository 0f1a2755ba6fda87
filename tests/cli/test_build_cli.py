"""`ptolemy build|worker|pause|resume|cancel|retry` and `cars|manifest|files|verify` as an operator runs them:
real subprocesses, real stores (SQLite and PostgreSQL)."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil

from ptolemy_tui.core.multiformats import CODEC_RAW, CID
from ptolemy_tui.store.models import Car, Container
from tests.cli.helpers import run_ptolemy
from tests.worker.buildkit import FAST, make_tree, seed_project


def _cli(store_url, *argv, timeout=120):
    return run_ptolemy("--db", store_url, *argv, env=FAST, timeout=timeout)


def test_build_wait_then_results(store, store_url, tmp_path):
    src = make_tree(tmp_path / "src")
    seed_project("cli", src, tmp_path / "stg")
    n = Container.select().count()
    r = _cli(store_url, "build", "cli", "--wait", "--workers", "2")
    assert r.code == 0, r.err
    assert "build of cli started: 2 worker(s)" in r.out and r.out.rstrip().endswith("cli: built")
    assert f"{n}/{n} built" in r.out and "MB/s" in r.out and "\r" not in r.out  # plain lines when not a TTY

    cars = json.loads(_cli(store_url, "cars", "cli", "--json").out)["cars"]
    assert len(cars) == n
    assert set(cars[0]) >= {"payload_cid", "piece_cid", "piece_cid_v2", "car_size", "padded_piece_size", "path"}
    rows = list(csv.DictReader(io.StringIO(_cli(store_url, "cars", "cli", "--csv").out)))
    assert [r["piece_cid"] for r in rows] == [c["piece_cid"] for c in cars]

    rows = list(csv.DictReader(io.StringIO(_cli(store_url, "manifest", "cli").out)))
    assert len(rows) == n
    first = rows[0]
    assert first["commp"] == cars[0]["piece_cid"] and first["payload_cid"] == cars[0]["payload_cid"]
    assert int(first["size"]) == cars[0]["car_size"] and int(first["padded_size"]) == cars[0]["padded_piece_size"]
    assert first["file_name"] == f"{first['commp']}.car" and first["piece_cid_v2"].startswith("bafkzcib")
    doc = json.loads(_cli(store_url, "manifest", "cli", "--format", "json").out)
    assert doc["project"] == "cli" and [c["commp"] for c in doc["cars"]] == [c["piece_cid"] for c in cars]

    files = json.loads(_cli(store_url, "files", "cli", "--json").out)["files"]
    by_path = {f["path"]: f for f in files}
    assert by_path["a.txt"]["cid"] == str(CID.sha256(CODEC_RAW, b"hello\n"))  # a one-chunk file is its raw leaf
    assert by_path["big.bin.ptolemy1"]["shard_index"] == 1 and by_path["big.bin.ptolemy1"]["source"] == "big.bin"
    assert by_path["a.txt"]["car"].endswith(".car")
    plain = _cli(store_url, "files", "cli").out.splitlines()
    assert len(plain) == len(files) and plain[0].count("\t") == 2

    r = _cli(store_url, "verify", "cli")
    assert r.code == 0 and f"{n} of {n} CARs verified" in r.out
    victim = Car.select().order_by(Car.id).first()
    with open(victim.path, "r+b") as fh:  # one flipped byte in the last block
        fh.seek(-3, os.SEEK_END)
        byte = fh.read(1)
        fh.seek(-3, os.SEEK_END)
        fh.write(bytes([byte[0] ^ 0xFF]))
    r = _cli(store_url, "verify", "cli", "--json")
    assert r.code == 1
    report = json.loads(r.out)
    assert not report["ok"] and sum(not c["ok"] for c in report["cars"]) == 1
    assert "failed verification" in r.err


def test_build_wait_exits_1_when_a_container_fails_and_retry(store, store_url, tmp_path):
    src = make_tree(tmp_path / "src")
    seed_project("bad", src, tmp_path / "stg")
    (src / "a.txt").write_bytes(b"changed after the scan\n")
    r = _cli(store_url, "build", "bad", "--wait")
    assert r.code == 1
    assert "failed after 1 attempt(s): source changed since scan: a.txt" in r.err
    r = _cli(store_url, "retry", "bad")
    assert r.code == 0 and "1 failed container(s) requeued; start them with `ptolemy build bad`" in r.out
    r = _cli(store_url, "retry", "bad")
    assert r.code == 0 and "no failed containers" in r.out


def test_usage_errors_and_refusals(store, store_url, tmp_path):
    src = make_tree(tmp_path / "src")
    seed_project("u", src, tmp_path / "stg")
    r = _cli(store_url, "build", "u", "--workers", "0")
    assert r.code == 2 and "out of range" in r.err
    r = _cli(store_url, "build", "nope")
    assert r.code == 2 and "no project named 'nope'" in r.err
    for verb in ("pause", "resume", "cancel"):
        r = _cli(store_url, verb, "u")
        assert r.code == 2 and "no build is running" in r.err and len(r.err.strip().splitlines()) == 1
    r = _cli(store_url, "worker", "--project", "u")
    assert r.code == 2 and "is not building" in r.err


def test_pause_resume_cancel(store, store_url, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"f{i}.bin").write_bytes(os.urandom(8 << 20))
    seed_project("steer", src, tmp_path / "stg", per_container=8 << 20, shard_size=8 << 20)
    r = _cli(store_url, "build", "steer", "--workers", "1")
    assert r.code == 0, r.err
    r = _cli(store_url, "pause", "steer")
    assert r.code == 0 and "paused" in r.out
    r = _cli(store_url, "cancel", "steer")  # a paused build is still a running build
    assert r.code == 0 and "cancelled" in r.out and "still stopping" not in r.out
    status = json.loads(_cli(store_url, "status", "steer", "--json").out)
    assert status["status"] == "containerized" and status["live_workers"] == []
    assert status["containers_built"] < 8
    r = _cli(store_url, "resume", "steer")
    assert r.code == 2 and "no build is running" in r.err
    assert not [n for n in os.listdir(tmp_path / "stg" / "steer") if n.endswith(".part")]


def test_foreground_worker_with_host_paths(store, store_url, tmp_path):
    """Another host mounts the tree and the staging disk elsewhere: `ptolemy worker` takes both paths."""
    src = make_tree(tmp_path / "src")
    seed_project("remote", src, tmp_path / "stg")
    from ptolemy_tui.store.models import Project

    Project.update(status="building").execute()
    other_src = tmp_path / "mnt" / "tree"
    shutil.copytree(src, other_src, copy_function=shutil.copy2)  # same sizes and mtimes
    other_stg = tmp_path / "mnt" / "staging"
    r = _cli(store_url, "worker", "--project", "remote", "--staging", str(other_stg), "--source-root", str(other_src))
    assert r.code == 0, r.err
    assert "worker" in r.err and "started on project remote" in r.err
    cars = list(Car.select())
    assert len(cars) == Container.select().count()
    assert all(c.path.startswith(str(other_stg / "remote")) for c in cars)
    assert Project.get().status == "built"


def test_ctrl_c_of_build_wait_says_the_workers_keep_running(store, store_url, tmp_path):
    import signal
    import subprocess
    import sys

    from ptolemy_tui.services import build

    src = make_tree(tmp_path / "src")
    seed_project("cc", src, tmp_path / "stg")
    env = dict(os.environ, **FAST, PTOLEMY_READ_RATE="256KiB")  # slow enough to interrupt mid-build
    # As from a terminal: SIGINT at its default even when this run inherited it ignored (a background job of a
    # non-interactive shell does), or Python would never raise KeyboardInterrupt in the child.
    proc = subprocess.Popen([sys.executable, "-m", "ptolemy_tui", "--db", store_url, "build", "cc", "--wait",
                             "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert "build of cc started" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "stopped following; the workers keep building cc" in err and "ptolemy cancel cc" in err
    assert "Traceback" not in err and err.count("\n") == 2  # the blank line ending the progress line, then one
    assert build.build_progress("cc")["workers"], "the detached worker still builds"
    build.cancel("cc")
    assert build.wait_for_workers("cc", timeout=20) == 0


def test_moved_cars_are_moved_not_bad_and_verify_where_finds_them(store, store_url, tmp_path):
    src = make_tree(tmp_path / "src")
    seed_project("mv", src, tmp_path / "stg")
    assert _cli(store_url, "build", "mv", "--wait").code == 0
    n = Car.select().count()
    moved_dir = tmp_path / "deals"
    moved_dir.mkdir()
    first = Car.select().order_by(Car.id).first()
    shutil.move(first.path, moved_dir / os.path.basename(first.path))  # what the waiting banner asks for
    r = _cli(store_url, "verify", "mv")
    assert r.code == 0, r.err
    assert "moved (not verified)" in r.out and "BAD" not in r.out
    assert f"{n - 1} of {n} CARs verified; 1 moved off staging" in r.out
    doc = json.loads(_cli(store_url, "verify", "mv", "--json").out)
    assert doc["ok"] and doc["moved"] == 1 and [c["location"] for c in doc["cars"]].count("moved") == 1
    r = _cli(store_url, "verify", "mv", "--where", str(moved_dir))
    assert r.code == 0 and f"{n} of {n} CARs verified" in r.out
    with open(moved_dir / os.path.basename(first.path), "r+b") as fh:  # a bad copy at its new home is caught
        fh.seek(-3, os.SEEK_END)
        fh.write(b"\x00\x00\x00")
    assert _cli(store_url, "verify", "mv", "--where", str(moved_dir)).code == 1
    r = _cli(store_url, "verify", "mv", "--where", str(tmp_path / "nowhere"))
    assert r.code == 2 and "--where" in r.err and r.err.count("\n") == 1
