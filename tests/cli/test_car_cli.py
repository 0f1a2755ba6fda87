"""`ptolemy car create|root|ls|verify` as an operator runs them."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from ptolemy_tui.cli import main
from tests.core.unixfs_cases import CASES, materialize

CARS = Path(__file__).parents[1] / "fixtures" / "cars"
VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "unixfs_generated.json").read_text())["vectors"]


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _vector(case, profile="kubo", wrap=False):
    return next(v for v in VECTORS if v["case"] == case and v["profile"] == profile and v["wrap"] == wrap
                and v["group"] == "default")


# piece CIDs computed by the oracle (`node commp.mjs CAR --engine hashtree`) on the kubo CARs of these cases
ORACLE_PIECES = {
    "hello-dir": "baga6ea4seaqfe4ignrgu3spajisadfqzurrs22loebb3hfzg4x2gjzttidnjwda",
    "sizes-tree": "baga6ea4seaqifpzmp4xsq7enud6p33mshdrk3hhn2ok5jnlulaqotoyqflghedy",
    "dedup": "baga6ea4seaqaxrrorja4hjqco7eq3ycres3jjihk6ldfafjtd4n4cl3qpzrgopi",
}


@pytest.mark.parametrize("case", sorted(ORACLE_PIECES))
def test_create_prints_root_and_piece_cid_matching_the_oracle(capsys, tmp_path, case):
    path = materialize(CASES[case], tmp_path)
    out = tmp_path / "out.car"
    code, stdout, err = run(capsys, "car", "create", os.fsdecode(path), "-o", out)
    assert code == 0, err
    vector = _vector(case)
    lines = stdout.splitlines()
    assert lines[0] == f"root {vector['root']}"
    assert hashlib.sha256(out.read_bytes()).hexdigest() == vector["car_sha256"]
    assert lines[1] == f"piece_cid {ORACLE_PIECES[case]}"


def test_create_json_has_stable_keys(capsys, tmp_path):
    path = materialize(CASES["hello-dir"], tmp_path)
    code, stdout, _ = run(capsys, "car", "create", os.fsdecode(path), "-o", tmp_path / "o.car", "--json")
    doc = json.loads(stdout)
    assert code == 0
    assert {"root_cid", "car_size", "piece_cid", "piece_cid_v2", "padded_piece_size"} <= set(doc)
    assert doc["root_cid"] == _vector("hello-dir")["root"] and doc["car_size"] == 202
    assert doc["padded_piece_size"] in (256, None)


def test_create_profiles_and_wrap(capsys, tmp_path):
    path = materialize(CASES["file-174x262144+1"], tmp_path)
    for profile, wrap in (("go-car", False), ("go-car", True), ("kubo", False)):
        argv = ["car", "create", os.fsdecode(path), "-o", tmp_path / "o.car", "--profile", profile]
        code, stdout, _ = run(capsys, *argv, *(["--wrap"] if wrap else []))
        assert code == 0
        expected = _vector("file-174x262144+1", profile, False)["root"] if not wrap else None
        if expected:
            assert stdout.splitlines()[0] == f"root {expected}"


def test_create_several_paths_makes_one_directory(capsys, tmp_path):
    (tmp_path / "a").write_bytes(b"A")
    (tmp_path / "b").mkdir()
    code, stdout, _ = run(capsys, "car", "create", tmp_path / "a", tmp_path / "b", "-o", tmp_path / "o.car")
    assert code == 0
    code, stdout, _ = run(capsys, "car", "ls", tmp_path / "o.car")
    assert [line.split("\t")[1] for line in stdout.splitlines()] == [".", "a", "b"]


def test_root_ls_verify_on_fixtures(capsys):
    code, stdout, _ = run(capsys, "car", "root", CARS / "go-car-sample-wrapped-v2.car")
    assert (code, stdout) == (0, "bafy2bzaced4ueelaegfs5fqu4tzsh6ywbbpfk3cxppupmxfdhbpbhzawfw5oy\n")
    code, stdout, _ = run(capsys, "car", "ls", CARS / "go-car-simple-unixfs.car")
    assert code == 0 and "QmPLPpnptHc1DMhJAWNYMTqBTqqRQNy5WsY7F9pZgsBfMT\t." in stdout and "a/1/A.txt" in stdout
    code, stdout, _ = run(capsys, "car", "verify", CARS / "kubo-TestGatewayHAMTDirectory.car")
    assert code == 0 and stdout.startswith("ok:")
    code, stdout, _ = run(capsys, "car", "verify", CARS / "go-car-sample-v1.car", "--json")
    assert code == 0 and json.loads(stdout)["blocks"] == 1049


@pytest.mark.parametrize("name", ["go-car-badheaderlength.car", "go-car-badsectionlength.car",
                                  "go-car-sample-corrupt-pragma.car", "go-car-sample-v1-tailing-corrupt-section.car",
                                  "go-car-simple-unixfs-missing-blocks.car"])
@pytest.mark.parametrize("action", ["root", "ls", "verify"])
def test_bad_cars_give_one_line_and_exit_1(capsys, name, action):
    code, stdout, err = run(capsys, "car", action, CARS / name)
    if action == "root" and name in ("go-car-badsectionlength.car", "go-car-sample-v1-tailing-corrupt-section.car",
                                     "go-car-simple-unixfs-missing-blocks.car"):
        assert code == 0  # the header itself is fine
        return
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    if action == "verify" and "missing" not in name:
        assert "offset" in err


def test_usage_errors_exit_2(capsys, tmp_path):
    assert run(capsys, "car")[0] == 2
    assert run(capsys, "car", "create", tmp_path / "nope", "-o", tmp_path / "o.car")[0] == 2
    assert run(capsys, "car", "create", tmp_path)[0] == 2  # no -o
    assert run(capsys, "car", "verify", tmp_path / "nope.car")[0] == 2
    assert run(capsys, "car", "verify", tmp_path)[0] == 2
    (tmp_path / "x").write_bytes(b"1")
    assert run(capsys, "car", "create", tmp_path / "x", "-o", tmp_path / "no" / "dir" / "o.car")[0] == 2
    code, _, err = run(capsys, "car", "create", tmp_path / "x", "-o", tmp_path / "o.car", "--profile", "ipfs")
    assert code == 2 and err.count("\n") == 1


def test_a_changed_source_fails_and_leaves_no_car(capsys, tmp_path, monkeypatch):
    from ptolemy_tui.core import car as carmod

    (tmp_path / "x").write_bytes(b"1" * 10)
    real = carmod._SourceReader.__call__

    def shrinking(self, entry, chunk_size):
        os.truncate(entry.source, 2)
        return real(self, entry, chunk_size)

    monkeypatch.setattr(carmod._SourceReader, "__call__", shrinking)
    code, _, err = run(capsys, "car", "create", tmp_path / "x", "-o", tmp_path / "o.car")
    assert code == 1 and "shorter" in err and not (tmp_path / "o.car").exists()


def test_ls_escapes_unprintable_names(capsys, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / os.fsdecode(b"new\nline")).write_bytes(b"1")
    (d / os.fsdecode(b"caf\xe9")).write_bytes(b"2")
    code, _, _ = run(capsys, "car", "create", d, "-o", tmp_path / "o.car")
    assert code == 0
    code, stdout, _ = run(capsys, "car", "ls", tmp_path / "o.car")
    assert code == 0 and len(stdout.splitlines()) == 3
    assert "new\\nline" in stdout and "caf\\xe9" in stdout
    code, stdout, _ = run(capsys, "car", "ls", tmp_path / "o.car", "--json")
    rows = json.loads(stdout)["entries"]
    assert any(r.get("path_hex") == b"caf\xe9".hex() for r in rows)


def test_an_output_inside_the_input_is_left_out(capsys, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x")
    out = tmp_path / "d" / "o.car"
    assert run(capsys, "car", "create", tmp_path / "d", "-o", out)[0] == 0
    first = out.read_bytes()
    assert run(capsys, "car", "create", tmp_path / "d", "-o", out)[0] == 0  # o.car now exists in d
    assert out.read_bytes() == first


def test_go_car_profile_keeps_the_command_line_order_of_top_level_paths(capsys, tmp_path):
    from ptolemy_tui.core.carread import CarFile

    for name in ("zeta", "alpha"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_bytes(name.encode())
    args = ("car", "create", tmp_path / "zeta", tmp_path / "alpha", "--profile", "go-car", "--json")
    assert run(capsys, *args, "-o", tmp_path / "given.car")[0] == 0
    with CarFile(tmp_path / "given.car") as car:
        blocks = [bytes(s.data) for s in car.sections()]
    # go-car puts zeta's blocks first (its builder runs per argument, in order); the root's links stay sorted
    assert blocks.index(b"zeta") < blocks.index(b"alpha")
    assert blocks[-1].index(b"alpha") < blocks[-1].index(b"zeta")
    # kubo walks the top in name order; both give the same root (the DAG is the same, only the order differs)
    code, out, _ = run(capsys, "car", "create", tmp_path / "zeta", tmp_path / "alpha", "--profile", "kubo",
                       "--wrap", "--json", "-o", tmp_path / "named.car")
    with CarFile(tmp_path / "named.car") as car:
        kubo_blocks = [bytes(s.data) for s in car.sections()]
    assert kubo_blocks.index(b"alpha") < kubo_blocks.index(b"zeta")
    assert sorted(kubo_blocks) == sorted(blocks)


@pytest.mark.parametrize("profile", ["kubo", "go-car"])
def test_cid_only_gives_the_root_without_writing_a_car(capsys, tmp_path, profile):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "big").write_bytes(os.urandom(3 * 262144 + 5))
    (tree / "small").write_bytes(b"small")
    code, out, _ = run(capsys, "car", "create", tree, "--profile", profile, "-o", tmp_path / "o.car", "--json")
    written = json.loads(out)
    before = sorted(os.listdir(tmp_path))
    code, out, _ = run(capsys, "car", "create", tree, "--profile", profile, "--cid-only", "--json")
    only = json.loads(out)
    assert code == 0 and sorted(os.listdir(tmp_path)) == before
    assert (only["root_cid"], only["car_size"], only["block_count"]) == (
        written["root_cid"], written["car_size"], written["block_count"])
    assert only["output"] is None and only["piece_cid"] is None
    code, out, _ = run(capsys, "car", "create", tree, "--cid-only")
    assert (code, out) == (0, f"root {written['root_cid']}\n")


def test_cid_only_and_output_together_is_a_usage_error(capsys, tmp_path):
    (tmp_path / "x").write_bytes(b"1")
    code, _, err = run(capsys, "car", "create", tmp_path / "x", "--cid-only", "-o", tmp_path / "o.car")
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "o.car").exists()


def test_ls_tells_a_control_byte_from_its_escape_text(capsys, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    byte_one, literal = b"a\x01", b"a\\x01"
    for name in (byte_one, literal, b"plain"):
        with open(os.fsencode(d) + b"/" + name, "wb") as fh:
            fh.write(name)
    assert run(capsys, "car", "create", d, "-o", tmp_path / "o.car")[0] == 0
    code, stdout, _ = run(capsys, "car", "ls", tmp_path / "o.car")
    shown = [line.split("\t")[1] for line in stdout.splitlines()]
    assert code == 0 and len(set(shown)) == len(shown) == 4
    assert {"a\\x01", "a\\\\x01"} <= set(shown)  # the byte 0x01 and the four characters a\x01
    code, stdout, _ = run(capsys, "car", "ls", tmp_path / "o.car", "--json")
    rows = {r["path"].split("/")[-1]: r for r in json.loads(stdout)["entries"]}
    assert bytes.fromhex(rows["a\\x01"]["path_hex"]).endswith(byte_one)
    assert bytes.fromhex(rows["a\\\\x01"]["path_hex"]).endswith(literal)
    assert "path_hex" not in rows["plain"]
