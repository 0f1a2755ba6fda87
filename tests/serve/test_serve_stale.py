"""An inline CAR whose source changed after the build: 500 with the reason, logged, the CAR marked stale, and
never different bytes — whether size/mtime tell (checked before any header) or only the leaf hashes do."""
from __future__ import annotations

import json
import os

import httpx

from ptolemy_tui.services import pieces
from ptolemy_tui.store import db
from ptolemy_tui.store.models import Car, Event
from tests.serve.servekit import ServeProc, cli


def _build_inline(tmp_path, url):
    src = tmp_path / "src"
    src.mkdir()
    (src / "one.bin").write_bytes(os.urandom(1_500_000))
    (src / "two.bin").write_bytes(os.urandom(700_000))
    cli(url, "project", "create", "p", "--target", str(src), "--staging", str(tmp_path / "stg"),
        "--car-size", "4MiB", "--shard-size", "4MiB", "--load-type", "inline")
    cli(url, "scan", "p")
    cli(url, "containerize", "p")
    cli(url, "build", "p", "--wait")
    return src, json.loads(cli(url, "cars", "p", "--json").out)["cars"][0]


def _stale_reason(url, car_id=None):
    db.open_database(url)
    try:
        return [c.stale_reason for c in Car.select()], [e.text for e in Event.select() if "stale" in e.text]
    finally:
        db.close_database()


def test_changed_mtime_refuses_before_any_byte(tmp_path):
    url = f"sqlite:///{tmp_path / 'ptolemy.db'}"
    src, car = _build_inline(tmp_path, url)
    server = ServeProc(url)
    try:
        with httpx.Client(timeout=30) as client:
            full = client.get(server.url(car["piece_cid"]))
            assert full.status_code == 200 and len(full.content) == car["car_size"]
            st = os.stat(src / "two.bin")
            os.utime(src / "two.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
            r = client.get(server.url(car["piece_cid"]))
            assert r.status_code == 500 and "source changed since the build: two.bin" in r.text
            assert client.get(server.url(car["piece_cid"]), headers={"Range": "bytes=0-10"}).status_code == 500
    finally:
        err = server.stop()
    assert " 500 " in err and "two.bin" in err
    reasons, events = _stale_reason(url)
    assert reasons == ["source changed since the build: two.bin"] and events
    from tests.cli.helpers import run_ptolemy

    export = run_ptolemy("car", "export", "p", "1", "-o", str(tmp_path / "x.car"), env={"PTOLEMY_DB": url})
    assert export.code == 1 and "two.bin" in export.err and not (tmp_path / "x.car").exists()


def test_same_size_and_mtime_but_other_bytes_are_caught_by_the_leaf_hashes(tmp_path):
    url = f"sqlite:///{tmp_path / 'ptolemy.db'}"
    src, car = _build_inline(tmp_path, url)
    path = src / "one.bin"
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[1_000_000] ^= 0xFF  # a leaf in the middle of the first file
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as built: only the hash can tell
    server = ServeProc(url)
    try:
        with httpx.Client(timeout=30) as client:
            r = client.get(server.url(car["piece_cid"]), headers={"Range": "bytes=1000000-1000100"})
            assert r.status_code == 500 and "one.bin" in r.text
            assert client.get(server.url(car["piece_cid"])).status_code == 500  # stale from now on
    finally:
        err = server.stop()
    assert "marked stale" in err
    reasons, _ = _stale_reason(url)
    assert reasons and "one.bin" in reasons[0]


def test_a_full_download_is_cut_short_rather_than_wrong(tmp_path):
    """The change sits past the first read batch, so headers are out when it is found: the body stops short."""
    url = f"sqlite:///{tmp_path / 'ptolemy.db'}"
    src, car = _build_inline(tmp_path, url)
    server = ServeProc(url)
    original = httpx.get(server.url(car["piece_cid"]), timeout=30).content
    assert len(original) == car["car_size"]
    path = src / "two.bin"
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[600_000] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    try:
        got = b""
        try:
            with httpx.stream("GET", server.url(car["piece_cid"]), timeout=30) as r:
                assert r.status_code == 200
                for chunk in r.iter_raw():
                    got += chunk
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass
        assert len(got) < car["car_size"]
    finally:
        server.stop()
    db.open_database(url)
    try:
        piece = pieces.find_piece(car["piece_cid"])
        assert piece.stale_reason and "two.bin" in piece.stale_reason
        assert got == original[:len(got)]  # what did go out is a prefix of the CAR as built
    finally:
        db.close_database()


def test_inline_cars_of_a_bucket_are_served_from_the_bucket(tmp_path, monkeypatch):
    """An inline build of an S3 target (a real `rclone serve s3`) regenerates through the Source seam: the same
    bytes as the local tree's staged CARs; an object rewritten afterwards (same size and mtime, new ETag) is
    refused with 500."""
    from tests.s3server import S3Server
    from tests.worker.test_s3_build import make_bucket

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bucket = make_bucket(tmp_path / "served" / "bkt")
    s3 = S3Server(str(tmp_path / "served")).start()
    url = f"sqlite:///{tmp_path / 'ptolemy.db'}"
    try:
        for name, target, extra in (("cloud", "s3://bkt", ["--s3-endpoint", s3.url, "--no-sign-request",
                                                           "--load-type", "inline"]),
                                    ("disk", str(bucket), [])):
            cli(url, "project", "create", name, "--target", target, "--staging", str(tmp_path / f"stg-{name}"),
                "--car-size", "2MiB", "--shard-size", "1MiB", *extra)
            cli(url, "scan", name)
            cli(url, "containerize", name)
            cli(url, "build", name, "--wait")
        cloud = json.loads(cli(url, "cars", "cloud", "--json").out)["cars"]
        disk = json.loads(cli(url, "cars", "disk", "--json").out)["cars"]
        assert len(cloud) == len(disk) >= 2 and all(c["path"] == "" for c in cloud)
        server = ServeProc(url, "--project", "cloud")
        try:
            with httpx.Client(timeout=30) as client:
                for c, d in zip(cloud, disk):
                    with open(d["path"], "rb") as fh:
                        want = fh.read()
                    assert client.get(server.url(c["piece_cid"])).content == want
                    r = client.get(server.url(c["piece_cid"]), headers={"Range": "bytes=300000-900000"})
                    assert r.status_code == 206 and r.content == want[300000:900001]
                leaf = bucket / "big.bin"
                st = leaf.stat()
                leaf.write_bytes(bytes(st.st_size))
                os.utime(leaf, ns=(st.st_atime_ns, st.st_mtime_ns))
                codes = [client.get(server.url(c["piece_cid"])).status_code for c in cloud]
                assert 500 in codes
        finally:
            server.stop()
    finally:
        s3.stop()
