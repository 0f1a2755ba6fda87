"""The CAR reader on real CARs from go-car's and kubo's test data (tests/fixtures/cars) and on broken input."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptolemy_tui.core import carread, dagpb
from ptolemy_tui.core.car import SourceEntry, write_car
from ptolemy_tui.core.multiformats import CID, CODEC_DAG_CBOR, HASH_BLAKE2B_256

CARS = Path(__file__).parents[1] / "fixtures" / "cars"
SAMPLE_ROOT = "bafy2bzaced4ueelaegfs5fqu4tzsh6ywbbpfk3cxppupmxfdhbpbhzawfw5oy"


@pytest.mark.parametrize("name, version, root, blocks, reachable", [
    ("go-car-sample-v1.car", 1, SAMPLE_ROOT, 1049, 1043),
    ("go-car-sample-wrapped-v2.car", 2, SAMPLE_ROOT, 1049, 1043),
    ("go-car-simple-unixfs.car", 1, "QmPLPpnptHc1DMhJAWNYMTqBTqqRQNy5WsY7F9pZgsBfMT", 22, 22),
    ("kubo-TestGatewayHAMTDirectory.car", 1, "bafybeig3yoibxe56aolixqa4zk55gp5sug3qgaztkakpndzk2b2ynobd4i", 967, 967),
    ("kubo-t0115-dir-listing.car", 1, "bafybeig6ka5mlwkl4subqhaiatalkcleo4jgnr3hqwvpmsqfca27cijp3i", 10, 10),
])
def test_good_cars_verify(name, version, root, blocks, reachable):
    report = carread.verify(CARS / name)
    assert report.version == version
    assert [str(r) for r in report.roots] == [root]
    assert (report.blocks, report.reachable, report.duplicates) == (blocks, reachable, 0)
    assert report.unknown_codecs == set()


def test_the_dag_cbor_sample_is_blake2b_hashed_and_its_links_are_followed():
    with carread.CarFile(CARS / "go-car-sample-v1.car") as car:
        sections = list(car.sections())
    cbor = [s for s in sections if s.cid.codec == CODEC_DAG_CBOR]
    assert len(cbor) == 1043 and all(s.cid.hash_code == HASH_BLAKE2B_256 for s in cbor)
    assert sum(len(carread.block_links(s.cid, s.data)) for s in cbor) > 1000


@pytest.mark.parametrize("name, message, offset", [
    ("go-car-badheaderlength.car", "bad header length", 0),
    ("go-car-badsectionlength.car", "bad section length", 18),
    ("go-car-sample-corrupt-pragma.car", "bad header length", 0),
    ("go-car-sample-v1-tailing-corrupt-section.car", "bad section length", 479518),
])
def test_malformed_cars_fail_with_an_offset(name, message, offset):
    with pytest.raises(carread.CarFormatError, match=message) as info:
        carread.verify(CARS / name)
    assert info.value.offset == offset
    assert "\n" not in str(info.value)


def test_missing_blocks_are_reported_by_verify_and_ls():
    with pytest.raises(carread.CarFormatError, match="incomplete.*missing"):
        carread.verify(CARS / "go-car-simple-unixfs-missing-blocks.car")
    entries, problems = carread.ls(CARS / "go-car-simple-unixfs-missing-blocks.car")
    assert problems and all("missing" in p for p in problems)
    assert any(e.path.startswith(b"a/") for e in entries)


def test_ls_walks_flat_and_hamt_directories():
    entries, problems = carread.ls(CARS / "go-car-simple-unixfs.car")
    assert problems == []
    files = sorted(e.path for e in entries if e.kind == "file")
    assert files == [b"a/1/A.txt", b"a/2/B.txt", b"a/3/C.txt", b"b/4/D.txt", b"b/5/E.txt", b"b/6/F.txt",
                     b"c/7/G.txt", b"c/8/H.txt", b"c/9/I.txt"]
    entries, problems = carread.ls(CARS / "kubo-TestGatewayHAMTDirectory.car")
    assert problems == [] and entries[0].path == b"."
    names = [e.path for e in entries[1:]]
    assert len(names) == len(set(names)) == 963  # every entry once, none of the shard labels


def test_ls_of_a_non_unixfs_dag_lists_blocks():
    entries, _ = carread.ls(CARS / "go-car-sample-v1.car")
    assert len(entries) == 1049 and entries[0].kind == "block"


def test_a_flipped_byte_is_found_at_its_section(tmp_path):
    src = tmp_path / "s"
    src.write_bytes(b"q" * 5000)
    out = io.BytesIO()
    write_car([SourceEntry(b"d/a", str(src), 0, 5000), SourceEntry(b"d/b", str(src), 1, 10)], out)
    blob = bytearray(out.getvalue())
    with carread.CarFile(_save(tmp_path, blob)) as car:
        first = next(iter(car.sections()))
    blob[first.data_offset + 3] ^= 1
    with pytest.raises(carread.CarFormatError, match="does not hash") as info:
        carread.verify(_save(tmp_path, blob))
    assert info.value.offset == first.offset


@pytest.mark.parametrize("cut", [1, 30, 59, 60, 100, -1])
def test_truncated_cars_fail_cleanly(tmp_path, cut):
    src = tmp_path / "s"
    src.write_bytes(b"r" * 300)
    out = io.BytesIO()
    write_car([SourceEntry(b"x/a", str(src), 0, 300)], out)
    blob = out.getvalue()[:cut]
    with pytest.raises(carread.CarFormatError):
        carread.verify(_save(tmp_path, blob))


def test_cbor_decoder_handles_the_dag_cbor_kinds():
    value, end = carread.cbor_decode(bytes.fromhex("a3616101626262f5616383f6f93c00fb3ff8000000000000"))
    assert value == {"a": 1, "bb": True, "c": [None, 1.0, 1.5]} and end == 24
    cid = CID.parse("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4")
    tagged = b"\x81\xd8\x2a\x58\x25\x00" + cid.to_bytes()
    assert carread.cbor_decode(tagged)[0] == [cid]
    with pytest.raises(Exception):
        carread.cbor_decode(b"\x5f")


def test_dagpb_decode_round_trip():
    cid = CID.parse("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4").to_bytes()
    block = dagpb.encode_node([dagpb.encode_link(cid, b"name", 12)], dagpb.DIRECTORY_DATA)
    node = dagpb.decode_node(block)
    assert [(link.name, link.tsize, link.cid.to_bytes()) for link in node.links] == [(b"name", 12, cid)]
    assert dagpb.decode_unixfs(node.data).kind == dagpb.UNIXFS_DIRECTORY
    assert dagpb.link_length(36, 4, 12) == len(dagpb.encode_link(cid, b"name", 12))


def _save(tmp_path, blob) -> Path:
    p = tmp_path / "t.car"
    p.write_bytes(bytes(blob))
    return p


_UNIXFS = (CARS / "go-car-simple-unixfs.car").read_bytes()
_HAMT_HEAD = (CARS / "kubo-TestGatewayHAMTDirectory.car").read_bytes()[:6000]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from([_UNIXFS, _HAMT_HEAD]), data=st.data())
def test_any_corruption_is_a_car_format_error_never_a_crash(tmp_path_factory, base, data):
    blob = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(blob)))
    path = tmp_path_factory.mktemp("fuzz") / "f.car"
    path.write_bytes(bytes(blob[:cut]))
    for fn in (carread.verify, carread.ls):
        try:
            fn(path)
        except carread.CarFormatError as exc:
            assert "\n" not in str(exc)
