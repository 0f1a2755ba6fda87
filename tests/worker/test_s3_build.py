"""Projects whose target is an S3 bucket, against a real `rclone serve s3` on loopback (anonymous and with
--auth-key): scan, containerize and build through the CLI, CARs byte-identical to the same tree built from
local disk, rescans, objects changed or deleted before the build, the server gone and back, and the one-line
errors of a wrong endpoint, bucket or credentials."""
from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path

import pytest

from ptolemy_tui.core import source_s3
from ptolemy_tui.core.source_s3 import S3Source, S3Walker
from tests.cli.helpers import run_ptolemy
from tests.s3server import S3Server
from tests.worker.buildkit import FAST

CHUNK = 262144
SHARD = 1 << 20


@pytest.fixture(autouse=True)
def no_aws_config(monkeypatch, tmp_path):
    """No test reads the operator's AWS files or asks an instance-metadata service for credentials."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def make_bucket(root: Path) -> Path:
    """Mixed sizes (empty, one byte, exactly one and two chunks, one past shard_size), keys with spaces, unicode
    and '+', and "directories" that exist only as key prefixes."""
    rng = random.Random(12)
    files = {
        "empty": b"",
        "one": b"x",
        "chunk.bin": rng.randbytes(CHUNK),
        "two chunks.bin": rng.randbytes(2 * CHUNK),
        "big.bin": rng.randbytes(SHARD * 2 + 12345),
        "a+b=c.txt": b"plus\n",
        "ünïcødé/ファイル.txt": "名前\n".encode(),
        "only/prefix/deep/leaf.bin": rng.randbytes(70_000),
        "only/other.txt": b"other\n" * 100,
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _cli(db, *argv, env=None, timeout=120):
    return run_ptolemy("--db", db, *argv, env=dict(FAST, **(env or {})), timeout=timeout)


def _ok(r):
    assert r.code == 0, r.out + r.err
    return r


@pytest.fixture
def served(tmp_path):
    bucket = make_bucket(tmp_path / "served" / "bkt")
    server = S3Server(str(tmp_path / "served")).start()
    yield server, bucket
    server.stop()


def _pipeline(db, name, target, staging, *extra):
    _ok(_cli(db, "project", "create", name, "--target", target, "--staging", str(staging), "--car-size", "2MiB",
             "--shard-size", "1MiB", "--workers", "2", *extra))
    scan = json.loads(_ok(_cli(db, "scan", name, "--json")).out)
    _ok(_cli(db, "containerize", name))
    return scan


def _cars(db, name):
    return json.loads(_ok(_cli(db, "cars", name, "--json")).out)["cars"]


def test_bucket_builds_the_same_cars_as_the_local_tree(served, tmp_path):
    server, bucket = served
    db = f"sqlite:///{tmp_path}/p.db"
    s3 = ("--s3-endpoint", server.url, "--no-sign-request")
    scan_s3 = _pipeline(db, "cloud", "s3://bkt", tmp_path / "stg-s3", *s3)
    scan_local = _pipeline(db, "disk", str(bucket), tmp_path / "stg-local")
    for key in ("files", "directories", "bytes", "errors"):
        assert scan_s3[key] == scan_local[key], key
    assert scan_s3["directories"] == 4 and scan_s3["errors"] == 0  # ünïcødé, only, only/prefix, only/prefix/deep

    show = json.loads(_ok(_cli(db, "project", "show", "cloud", "--json")).out)
    assert show["source"] == "s3" and show["target_dir"] == "s3://bkt" and show["s3_no_sign"] is True
    assert show["s3_endpoint"] == server.url
    items = json.loads(_ok(_cli(db, "container", "cloud", "1", "--json")).out)["items"]
    assert all(item["source"].startswith("s3://bkt/") for item in items)

    _ok(_cli(db, "build", "cloud", "--wait"))
    _ok(_cli(db, "build", "disk", "--wait"))
    cloud, disk = _cars(db, "cloud"), _cars(db, "disk")
    assert len(cloud) == len(disk) >= 2
    for a, b in zip(cloud, disk):
        assert (a["payload_cid"], a["piece_cid"], a["car_size"]) == (b["payload_cid"], b["piece_cid"], b["car_size"])
        assert Path(a["path"]).read_bytes() == Path(b["path"]).read_bytes()
    files = {f["path"]: f["cid"] for f in json.loads(_ok(_cli(db, "files", "cloud", "--json")).out)["files"]}
    assert "ünïcødé/ファイル.txt" in files and "big.bin.ptolemy2" in files and "a+b=c.txt" in files


def test_rescan_changes_and_objects_changed_or_deleted_before_the_build(served, tmp_path):
    server, bucket = served
    db = f"sqlite:///{tmp_path}/p.db"
    _pipeline(db, "cloud", "s3://bkt/only", tmp_path / "stg", "--s3-endpoint", server.url, "--no-sign-request")
    # same size, new content (and ETag); one deleted; one added
    leaf = bucket / "only/prefix/deep/leaf.bin"
    st = leaf.stat()
    leaf.write_bytes(bytes(70_000))
    os.utime(leaf, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime, the ETag tells
    r = _cli(db, "build", "cloud", "--wait")
    assert r.code == 1 and "source changed since scan: s3://bkt/only/prefix/deep/leaf.bin" in r.err, r.err
    (bucket / "only/other.txt").unlink()
    (bucket / "only/new.txt").write_bytes(b"new\n")
    scan = json.loads(_ok(_cli(db, "scan", "cloud", "--json")).out)
    assert (scan["added"], scan["changed"], scan["removed"]) == (1, 1, 1)

    _ok(_cli(db, "containerize", "cloud"))
    (bucket / "only/new.txt").unlink()
    r = _cli(db, "build", "cloud", "--wait")
    assert r.code == 1 and "vanished since scan: s3://bkt/only/new.txt" in r.err, r.err
    assert not list((tmp_path / "stg").rglob("*.part"))


def test_server_gone_fails_the_container_cleanly_then_the_build_carries_on(served, tmp_path):
    server, bucket = served
    db = f"sqlite:///{tmp_path}/p.db"
    _pipeline(db, "cloud", "s3://bkt", tmp_path / "stg", "--s3-endpoint", server.url, "--no-sign-request")
    server.stop()
    r = _cli(db, "build", "cloud", "--wait", env={"PTOLEMY_S3_RETRY_SECONDS": "0.5"})
    assert r.code == 1 and "cannot reach the S3 endpoint" in r.err, r.err
    assert not list((tmp_path / "stg").rglob("*.part"))
    server.start()
    _ok(_cli(db, "retry", "cloud"))
    _ok(_cli(db, "build", "cloud", "--wait"))
    assert all(c["piece_cid"] for c in _cars(db, "cloud"))


def test_reader_rides_out_a_server_restart(served, monkeypatch):
    """The server dies half-way through an object; the range GETs in flight fail, are retried with backoff, and
    the object reads whole once the server is back."""
    server, bucket = served
    monkeypatch.setattr(source_s3, "PART", 64 * 1024)
    monkeypatch.setattr(source_s3, "READ_AHEAD", 128 * 1024)
    src = S3Source("s3://bkt", endpoint=server.url, unsigned=True)
    retries = []
    restarting = threading.Lock()

    def on_retry(exc, attempt):  # several fetch threads fail at once: one of them restarts the server
        retries.append(exc)
        with restarting:
            if server.proc is None:
                server.start()

    src.on_retry = on_retry
    data = (bucket / "big.bin").read_bytes()
    src.plan([(b"big.bin", 0, len(data), None)])
    reader = src.open(b"big.bin", 0, len(data))
    buf = bytearray(len(data))
    view = memoryview(buf)
    got = reader.readinto_at(view[:1000], 0)
    server.stop()
    while got < len(data):
        n = reader.readinto_at(view[got:], got)
        assert n
        got += n
    reader.close()
    src.close()
    assert buf == data and retries


def test_wrong_credentials_and_unreachable_endpoint_are_one_line(tmp_path):
    make_bucket(tmp_path / "served" / "bkt")
    server = S3Server(str(tmp_path / "served"), auth=("AKIDTEST", "secret-test-key")).start()
    try:
        db = f"sqlite:///{tmp_path}/p.db"
        base = ("project", "create", "p", "--staging", str(tmp_path / "stg"), "--s3-endpoint", server.url)
        good = {"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret-test-key"}
        bad = {"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "wrong"}
        cases = [
            (("--target", "s3://bkt"), bad, "access denied to s3://bkt"),
            (("--target", "s3://bkt", "--no-sign-request"), {}, "access denied to s3://bkt"),
            (("--target", "s3://nobucket"), good, "bucket 'nobucket' does not exist"),
            (("--target", "s3://bkt", "--s3-profile", "nope"), {}, "AWS profile 'nope'"),
        ]
        for args, env, words in cases:
            r = _cli(db, *base, *args, env=env)
            assert r.code == 2 and r.err.count("\n") == 1 and words in r.err and "Traceback" not in r.err, r.err
            assert "secret-test-key" not in r.err and "wrong" not in r.err
        r = _cli(db, "project", "create", "p", "--staging", str(tmp_path / "stg"), "--target", "s3://bkt",
                 "--s3-endpoint", "http://127.0.0.1:9", env=good)
        assert r.code == 2 and "cannot reach the S3 endpoint http://127.0.0.1:9" in r.err and r.err.count("\n") == 1
        assert "no projects" in _cli(db, "project", "list").err + _cli(db, "project", "list").out

        _ok(_cli(db, *base, "--target", "s3://bkt", "--car-size", "8MiB", "--shard-size", "1MiB", env=good))
        r = _cli(db, "scan", "p", env=bad)
        assert r.code == 2 and r.err.count("\n") == 1 and "access denied" in r.err, r.err
        scan = json.loads(_ok(_cli(db, "scan", "p", "--json", env=good)).out)
        assert scan["files"] == 9
        _ok(_cli(db, "containerize", "p", env=good))
        _ok(_cli(db, "build", "p", "--wait", env=good))
        stored = (tmp_path / "p.db").read_bytes()
        assert b"secret-test-key" not in stored
    finally:
        server.stop()


def test_keys_that_are_not_unixfs_names_are_scan_errors():
    """The listing parser on its own (keys a filesystem cannot hold, so rclone cannot serve them): pages made
    from a key list with ListObjectsV2's delimiter rules."""
    import datetime
    import queue

    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    keys = {"pre/a": 1, "pre/a/b": 2, "pre/x//y": 3, "pre/./z": 4, "pre/d/": 0, "pre/m/": 5, "pre/ok/f": 6,
            "pre/ok/g/h": 7}

    class Listed(S3Walker):
        def pages(self, key_prefix):
            contents, prefixes = [], []
            for key in sorted(keys):
                if not key.startswith(key_prefix):
                    continue
                rest = key[len(key_prefix):]
                if "/" in rest:
                    p = key_prefix + rest[:rest.index("/") + 1]
                    if p not in prefixes:
                        prefixes.append(p)
                else:
                    contents.append({"Key": key, "Size": keys[key], "ETag": '"e"', "LastModified": when})
            yield {"Contents": contents, "CommonPrefixes": [{"Prefix": p} for p in prefixes]}

    out = queue.Queue()
    walker = Listed(S3Source("s3://b/pre"), out, threading.Event(), threads=3)
    walker.start()
    chunks = []
    while (item := out.get(timeout=10)) is not None:
        assert not isinstance(item, BaseException), item
        chunks.append(item)
    walker.stop()
    kinds = {o[0]: (o[2], o[7]) for c in chunks for o in c[4]}
    assert kinds[b"a"] == ("file", None) and kinds[b"ok/f"] == ("file", None) and kinds[b"ok/g/h"][0] == "file"
    assert kinds[b"a/b"][0] == "error" and "both an object and a prefix" in kinds[b"a/b"][1]
    assert kinds[b"x//y"][0] == "error" and kinds[b"./z"][0] == "error" and kinds[b"m/"][0] == "error"
    subdirs = {(c[0], n) for c in chunks for n in c[5]}
    assert subdirs == {(b"", b"d"), (b"", b"ok"), (b"ok", b"g"), (b"", b"m"), (b"", b"x")}
    seen = {b""}
    for c in chunks:  # a directory is announced before any chunk of its own
        assert c[0] in seen
        seen.update((c[0] + b"/" if c[0] else b"") + n for n in c[5])
