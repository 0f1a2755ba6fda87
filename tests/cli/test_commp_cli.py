"""`ptolemy commp [FILE|-] [--json] [--engine [NAME]] [--threads N] [--padded-size S]`."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ptolemy_tui.core import commp
from tests.cli.helpers import run_cli, run_ptolemy
from tests.core.commp_cases import build_generated, load

VECTORS = {v["data"]["size"]: v for v in load("commp_generated.json")["vectors"] if v["data"]["kind"] == "shake128"}


@pytest.fixture
def car(tmp_path):
    v = VECTORS[(1 << 20) + 1]
    path = tmp_path / "payload.car"
    path.write_bytes(build_generated(v["data"]))
    return path, v


def test_stream_commp_lines(capsys, car):
    path, v = car
    r = run_cli(capsys, "commp", str(path))
    assert r.code == 0, r.err
    assert r.out.splitlines() == [
        f"CommPCid: {v['commp']}",
        "Payload:             1048577 bytes",
        "Unpadded piece:      2080768 bytes",
        "Padded piece:        2097152 bytes",
    ]


@pytest.mark.parametrize("engine", commp.available_engines())
def test_json_every_engine_and_threads(capsys, car, engine):
    path, v = car
    r = run_cli(capsys, "commp", str(path), "--json", "--engine", engine, "--threads", "2")
    assert r.code == 0, r.err
    assert r.json() == {k: v[k] for k in ("commp", "piece_cid_v2", "payload_size", "unpadded_piece_size",
                                          "padded_piece_size")}
    assert list(r.json()) == ["commp", "piece_cid_v2", "payload_size", "unpadded_piece_size", "padded_piece_size"]


def test_engine_flag_alone_prints_the_engine(capsys):
    r = run_cli(capsys, "commp", "--engine")
    name, why = r.out.splitlines()
    assert r.code == 0 and name == commp.engine_name()
    assert name in ("c-avx512", "c-sha-ni-x4", "c-sha-ni", "c-portable", "python")
    assert why == f"why: {commp.engine_reason()}"
    r = run_cli(capsys, "commp", "--engine", "--json")
    doc = r.json()
    assert doc == {"engine": commp.engine_name(), "reason": commp.engine_reason(),
                   "available": commp.available_engines(), "calibrated": commp.calibrated_figures()}
    if name != "python":  # calibrated: the figures name every C path and the engine is the fastest of them
        assert why.startswith("why: calibrated ") and "MB per CPU-second" in why
        assert set(doc["calibrated"]) == set(commp.available_engines()) - {"python"}
        assert name == max(doc["calibrated"], key=doc["calibrated"].get)


def test_engine_flag_with_a_file_computes_and_names_the_engine(capsys, car):
    path, v = car
    r = run_cli(capsys, "commp", str(path), "--engine")
    assert r.code == 0 and r.out.startswith(f"CommPCid: {v['commp']}\n")
    assert r.err.strip() == f"engine: {commp.engine_name()} ({commp.engine_reason()})"


def test_version_names_the_engine(capsys):
    r = run_cli(capsys, "--version")
    assert r.code == 0 and f"commp engine: {commp.engine_name()}" in r.out


def test_env_forces_the_python_engine(capsys, car, monkeypatch):
    path, v = car
    monkeypatch.setenv("PTOLEMY_COMMP_ENGINE", "python")
    r = run_cli(capsys, "commp", "--engine")
    assert r.out.splitlines() == ["python", "why: forced by PTOLEMY_COMMP_ENGINE=python"]
    r = run_cli(capsys, "--version")
    assert "commp engine: python; forced by PTOLEMY_COMMP_ENGINE=python" in r.out
    r = run_cli(capsys, "commp", str(path), "--json")
    assert r.json()["commp"] == v["commp"]


def test_padded_size(capsys, car):
    path, _ = car
    r = run_cli(capsys, "commp", str(path), "--json", "--padded-size", "32GiB")
    assert r.code == 0, r.err
    assert r.json()["padded_piece_size"] == 32 << 30 and r.json()["unpadded_piece_size"] == (32 << 30) * 127 // 128
    h = commp.CommP(min_padded_piece=32 << 30)
    h.update(path.read_bytes())
    assert r.json()["commp"] == h.digest().piece_cid_v1


@pytest.mark.parametrize("argv,message", [
    (["commp", "/nonexistent/x.car"], "no such file"),
    (["commp", "--engine", "gpu", "x"], "unknown CommP engine 'gpu'"),
    (["commp", "FILE", "--threads", "0"], "--threads must be at least 1"),
    (["commp", "FILE", "--padded-size", "3GiB"], "power of two"),
    (["commp", "FILE", "--padded-size", "lots"], "--padded-size"),
    (["commp", "SHORT"], "payload shorter than 65 bytes"),
    (["commp", "DIR"], "is a directory"),
])
def test_usage_errors_are_one_line_exit_2(capsys, car, tmp_path, argv, message):
    path, _ = car
    short = tmp_path / "short.bin"
    short.write_bytes(b"x" * 64)
    argv = [{"FILE": str(path), "SHORT": str(short), "DIR": str(tmp_path)}.get(a, a) for a in argv]
    r = run_cli(capsys, *argv)
    assert r.code == 2
    assert message in r.err and r.err.count("\n") == 1 and "Traceback" not in r.err


def test_engine_name_given_a_file_path_hints(capsys, car):
    path, _ = car
    r = run_cli(capsys, "commp", "--engine", str(path))
    assert r.code == 2 and "--engine=NAME" in r.err


def test_stdin_as_a_real_process(car):
    path, v = car
    data = path.read_bytes()
    for argv in (["commp", "-", "--json"], ["commp", "--json"]):
        proc = subprocess.run([sys.executable, "-m", "ptolemy_tui", *argv], input=data, capture_output=True,
                              timeout=120, env=dict(os.environ))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["commp"] == v["commp"]


def test_missing_file_as_a_real_process(tmp_path):
    r = run_ptolemy("commp", str(tmp_path / "nope.car"))
    assert r.code == 2 and r.err.startswith("ptolemy: ") and "no such file" in r.err and "Traceback" not in r.err


def test_padded_size_below_the_payloads_piece_is_refused(capsys, car):
    path, _v = car  # a 1 MiB + 1 byte payload: its own piece is 2 MiB padded
    r = run_cli(capsys, "commp", str(path), "--padded-size", "1MiB")
    assert r.code == 2 and r.out == ""
    assert "--padded-size 1MiB is smaller than the payload's own piece (2MiB)" in r.err
    assert run_cli(capsys, "commp", str(path), "--padded-size", "8MiB", "--json").json()["padded_piece_size"] == 8 << 20
