"""`ptolemy project …` and `ptolemy status` on SQLite and PostgreSQL: real store, real directories."""
from __future__ import annotations

import pytest

from tests.cli.helpers import run_cli, run_ptolemy


@pytest.fixture
def dirs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello")
    return src, tmp_path / "staging"


def test_create_list_show_edit_delete(capsys, store_url, dirs):
    src, stg = dirs
    r = run_cli(capsys, "--db", store_url, "project", "create", "alpha", "--target", str(src), "--staging", str(stg),
                "--car-size", "31GiB", "--shard-size", "512MiB", "--load-type", "serial", "--workers", "3",
                "--staging-budget", "100GiB", "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["name"] == "alpha" and doc["status"] == "defined"
    assert doc["car_size"] == 31 << 30 and doc["shard_size"] == 512 << 20
    assert doc["load_type"] == "serial" and doc["workers"] == 3 and doc["staging_budget"] == 100 << 30
    assert doc["padded_piece_size"] == 32 << 30
    assert stg.is_dir(), "the staging directory is created"

    r = run_cli(capsys, "project", "list", "--json", "--db", store_url)  # global option after the subcommand
    assert [p["name"] for p in r.json()["projects"]] == ["alpha"]

    r = run_cli(capsys, "--db", store_url, "project", "edit", "alpha", "--car-size", "17", "--load-type", "blitz")
    assert r.code == 0, r.err
    assert "fills 54% of a 32GiB piece" in r.err  # the seed's own 17 GiB wastes half a piece: warned
    r = run_cli(capsys, "--db", store_url, "project", "show", "alpha", "--json")
    assert r.json()["car_size"] == 17 << 30 and r.json()["load_type"] == "blitz"

    r = run_cli(capsys, "--db", store_url, "status", "alpha", "--json")
    assert r.json()["next_command"] == "ptolemy scan alpha"

    r = run_cli(capsys, "--db", store_url, "project", "delete", "alpha", "--yes")
    assert r.code == 0
    r = run_cli(capsys, "--db", store_url, "project", "list", "--json")
    assert r.json() == {"projects": []}


BAD_FIELDS = [
    (["--car-size", "17XB"], "unknown unit"),
    (["--car-size", "64GiB"], "too large"),
    (["--shard-size", "512KiB"], "too small"),
    (["--car-size", "1GiB", "--shard-size", "2GiB"], "exceeds --car-size"),
    (["--load-type", "turbo"], "use blitz, serial or inline"),
    (["--encryption", "aes"], "encryption is not implemented yet"),
    (["--workers", "0"], "out of range"),
    (["--workers", "many"], "not a number"),
    (["--staging-budget", "1MiB"], "below --car-size"),
]


@pytest.mark.parametrize("extra,message", BAD_FIELDS)
def test_bad_fields_are_one_line_exit_2_and_write_nothing(capsys, store_url, dirs, extra, message):
    src, stg = dirs
    r = run_cli(capsys, "--db", store_url, "project", "create", "beta", "--target", str(src), "--staging", str(stg),
                *extra)
    assert r.code == 2
    assert message in r.err and r.err.count("\n") == 1 and "Traceback" not in r.err
    assert not stg.exists(), "nothing is half-written"
    assert run_cli(capsys, "--db", store_url, "project", "list", "--json").json() == {"projects": []}


def test_bad_name_target_and_staging(capsys, store_url, dirs, tmp_path):
    src, stg = dirs
    cases = [
        (["project", "create", "bad/name", "--target", str(src), "--staging", str(stg)], "is invalid"),
        (["project", "create", "x" * 65, "--target", str(src), "--staging", str(stg)], "is invalid"),
        (["project", "create", "g", "--target", str(tmp_path / "nope"), "--staging", str(stg)], "no such directory"),
        (["project", "create", "g", "--target", str(src), "--staging", str(src / "inside")], "must not contain"),
        (["project", "create", "g", "--target", str(src), "--staging", str(src / "a.txt")], "not a directory"),
        (["project", "create", "g", "--target", str(src)], "required"),
        (["project", "show", "ghost"], "no project named 'ghost'"),
        (["project", "edit", "ghost", "--workers", "2"], "no project named 'ghost'"),
    ]
    for argv, message in cases:
        r = run_cli(capsys, "--db", store_url, *argv)
        assert r.code == 2, (argv, r)
        assert message in r.err and r.err.count("\n") == 1, (argv, r.err)


def test_duplicate_name_refused(capsys, store_url, dirs):
    src, stg = dirs
    argv = ["--db", store_url, "project", "create", "dup", "--target", str(src), "--staging", str(stg)]
    assert run_cli(capsys, *argv).code == 0
    r = run_cli(capsys, *argv)
    assert r.code == 2 and "already exists" in r.err


def test_edit_needs_a_change_and_validates(capsys, store_url, dirs):
    src, stg = dirs
    run_cli(capsys, "--db", store_url, "project", "create", "e", "--target", str(src), "--staging", str(stg))
    r = run_cli(capsys, "--db", store_url, "project", "edit", "e")
    assert r.code == 2 and "nothing to change" in r.err
    r = run_cli(capsys, "--db", store_url, "project", "edit", "e", "--shard-size", "40GiB")
    assert r.code == 2 and "exceeds --car-size" in r.err
    assert run_cli(capsys, "--db", store_url, "project", "show", "e", "--json").json()["shard_size"] == 1 << 30


def test_delete_without_yes_off_a_tty_is_refused(dirs, tmp_path):
    src, stg = dirs
    url = f"sqlite:///{tmp_path / 'p.db'}"
    assert run_ptolemy("--db", url, "project", "create", "d", "--target", str(src), "--staging", str(stg)).code == 0
    r = run_ptolemy("--db", url, "project", "delete", "d", input="")
    assert r.code == 2 and "add --yes" in r.err
    assert "d" in run_ptolemy("--db", url, "project", "list").out


def test_version_and_unknown_command():
    r = run_ptolemy("--version")
    assert r.code == 0 and r.out.startswith("ptolemy ") and "commp engine" in r.out
    r = run_ptolemy("frobnicate")
    assert r.code == 2 and r.err.count("\n") == 1 and "invalid choice" in r.err


def test_logging_options(capsys, tmp_path, dirs):
    src, stg = dirs
    url = f"sqlite:///{tmp_path / 'p.db'}"
    ini = tmp_path / "logging.ini"
    log_file = tmp_path / "ptolemy.log"
    ini.write_text(f"[logging]\nlog_level = DEBUG\nformat = %(levelname)s|%(message)s\nlogfile = {log_file}\n")
    r = run_cli(capsys, "--db", url, "--log-ini", str(ini), "project", "create", "l", "--target", str(src),
                "--staging", str(stg))
    assert r.code == 0, r.err
    assert "INFO|project l created" in log_file.read_text()
    r = run_cli(capsys, "--db", url, "--log-level", "LOUD", "project", "list")
    assert r.code == 2 and "unknown log level" in r.err


def test_password_never_reaches_log_or_error(capsys, tmp_path):
    log_file = tmp_path / "p.log"
    r = run_cli(capsys, "--log-file", str(log_file), "--log-level", "DEBUG",
                "--db", "postgresql://op:hunter2@127.0.0.1:1/x", "project", "list")
    assert r.code == 2 and "hunter2" not in r.err and "postgresql://***@127.0.0.1:1/x" in r.err
    assert "hunter2" not in log_file.read_text()


def test_small_cli_slips(capsys, store_url, dirs):
    src, stg = dirs
    assert run_cli(capsys, "--db", store_url, "project", "create", "slip", "--target", str(src), "--staging",
                   str(stg), "--car-size", "31GiB").code == 0
    r = run_cli(capsys, "--db", store_url, "scan", "slip", "--threads", "0")
    assert r.code == 2 and "out of range" in r.err and r.err.count("\n") == 1
    # the suggestion is never the value already set
    r = run_cli(capsys, "--db", store_url, "project", "edit", "slip", "--car-size", "7MiB", "--shard-size", "1MiB")
    assert r.code == 0, r.err
    assert "--car-size 8128KiB would fill it" in r.err + r.out and "--car-size 7MiB would" not in r.err + r.out
