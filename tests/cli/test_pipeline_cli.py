"""`ptolemy scan|containerize|containers|container` on SQLite and PostgreSQL, in-process and as a subprocess."""
from __future__ import annotations

from tests.cli.helpers import run_cli, run_ptolemy
from tests.services.pipeline_helpers import make_tree, write

MiB = 1 << 20


def _project(capsys, store_url, tmp_path):
    make_tree(tmp_path / "src")
    write(tmp_path / "src" / "big.bin", 3 * MiB + 1)
    r = run_cli(capsys, "--db", store_url, "project", "create", "p", "--target", str(tmp_path / "src"),
                "--staging", str(tmp_path / "stg"), "--car-size", "4MiB", "--shard-size", "1MiB")
    assert r.code == 0, r.err


def test_scan_containerize_and_views(capsys, store_url, tmp_path):
    _project(capsys, store_url, tmp_path)
    r = run_cli(capsys, "--db", store_url, "containerize", "p")
    assert r.code == 2 and r.err.count("\n") == 1 and "no finished scan" in r.err and "ptolemy scan p" in r.err

    r = run_cli(capsys, "--db", store_url, "scan", "p", "--threads", "2")
    assert r.code == 0, r.err
    assert "symlinks 2" in r.out and "skipped" in r.out and "errors 0" in r.out
    r = run_cli(capsys, "--db", store_url, "scan", "p", "--json")
    doc = r.json()
    assert (doc["added"], doc["changed"], doc["removed"]) == (0, 0, 0) and doc["files"] == 10

    r = run_cli(capsys, "--db", store_url, "containerize", "p", "--json")
    assert r.code == 0, r.err
    report = r.json()
    assert report["shards"] == 4 and report["containers"] >= 1
    r = run_cli(capsys, "--db", store_url, "containerize", "p")
    assert r.code == 2 and "--reset" in r.err
    r = run_cli(capsys, "--db", store_url, "containerize", "p", "--discard-built")
    assert r.code == 2 and "only goes with --reset" in r.err
    r = run_cli(capsys, "--db", store_url, "containerize", "p", "--reset")
    assert r.code == 0 and "mean fill" in r.out

    r = run_cli(capsys, "--db", store_url, "containers", "p", "--json")
    rows = r.json()["containers"]
    assert rows and set(rows[0]) >= {"id", "state", "predicted_size", "fill", "item_count", "shard_count"}
    r = run_cli(capsys, "--db", store_url, "containers", "p")
    assert "PREDICTED" in r.out and "pending" in r.out
    r = run_cli(capsys, "--db", store_url, "container", "p", str(rows[0]["id"]), "--json")
    items = r.json()["items"]
    assert set(items[0]) >= {"car_path", "source", "offset", "length"}
    assert any(i["car_path"] == "big.bin.ptolemy3" and i["length"] == 1 for row in rows for i in
               run_cli(capsys, "--db", store_url, "container", "p", str(row["id"]), "--json").json()["items"])
    r = run_cli(capsys, "--db", store_url, "container", "p", "999999")
    assert r.code == 2 and "no container" in r.err
    r = run_cli(capsys, "--db", store_url, "status", "p")
    assert "symlinks" in r.out and "skipped" in r.out


def test_scan_subprocess_non_tty_has_no_progress_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    (tmp_path / "src").mkdir()
    write(tmp_path / "src" / "a", 5)
    r = run_ptolemy("--db", url, "project", "create", "q", "--target", str(tmp_path / "src"), "--staging",
                    str(tmp_path / "stg"))
    assert r.code == 0, r.err
    r = run_ptolemy("--db", url, "scan", "q")
    assert r.code == 0 and r.err == "" and "files 1" in r.out
    r = run_ptolemy("--db", url, "scan", "nope")
    assert r.code == 2 and "no project named 'nope'" in r.err
