"""core.source_s3's range GET: which HTTP path a source takes, and how it reads a body, against a real
`rclone serve s3` and, for a body cut short, a real socket server that misbehaves on purpose."""
from __future__ import annotations

import random
import socket
import threading

import pytest

from ptolemy_tui.core.source_s3 import S3Source, is_transient
from tests.s3server import S3Server
from tests.worker.test_s3_build import no_aws_config  # noqa: F401 - autouse: no operator AWS files

OBJECT = random.Random(3).randbytes(300_000)


@pytest.fixture
def server(tmp_path):
    (tmp_path / "served" / "bkt").mkdir(parents=True)
    (tmp_path / "served" / "bkt" / "obj").write_bytes(OBJECT)
    s = S3Server(str(tmp_path / "served")).start()
    yield s
    s.stop()


def test_a_ca_bundle_in_the_environment_keeps_the_lean_path_for_plain_http(server, monkeypatch, tmp_path):
    """AWS_CA_BUNDLE is common on managed hosts; it says nothing about an http:// endpoint, so the range GETs
    still skip botocore's request pipeline (three times the CPU a request)."""
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "bundle.pem"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "bundle.pem"))
    src = S3Source("s3://bkt", endpoint=server.url, unsigned=True)
    assert src._lean() is not None
    buf = bytearray(100_000)
    got, state = src.fetch(b"obj", 123_456, 223_456, None, buf)
    assert (got, bytes(buf)) == (100_000, OBJECT[123_456:223_456])
    assert state.size == len(OBJECT)


def test_an_https_endpoint_verifies_with_the_bundle_botocore_would_use(monkeypatch, tmp_path):
    bundle = tmp_path / "bundle.pem"
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
    src = S3Source("s3://bkt", endpoint="https://s3.example.invalid", unsigned=True)
    assert src._lean().connection_pool_kw["ca_certs"] == str(bundle)
    monkeypatch.delenv("AWS_CA_BUNDLE")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    src = S3Source("s3://bkt", endpoint="https://s3.example.invalid", unsigned=True)
    assert src._lean().connection_pool_kw["ca_certs"] == str(bundle)


def test_a_proxy_in_the_environment_leaves_the_requests_to_botocore(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # botocore's own proxy rules let it reach the local server
    src = S3Source("s3://bkt", endpoint=server.url, unsigned=True)
    assert src._lean() is None
    buf = bytearray(50_000)
    got, state = src.fetch(b"obj", 250_000, 300_000, None, buf)  # through boto3's get_object
    assert (got, bytes(buf), state.size) == (50_000, OBJECT[250_000:], len(OBJECT))


def _server_that_cuts_bodies(sent: int, declared: int):
    """An HTTP server that declares `declared` bytes, sends `sent`, and closes: a connection cut mid-body."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\n"
                             b"Content-Range: bytes 0-%d/%d\r\nETag: \"e\"\r\n\r\n" % (declared, declared - 1, declared)
                             + OBJECT[:sent])
    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_a_body_cut_short_is_a_transient_error_not_short_data():
    """The body is read straight from the socket, past urllib3's own readinto: a cut there must still be an
    error the retries know (urllib3's ProtocolError), never a silent short read."""
    listener = _server_that_cuts_bodies(sent=1000, declared=5000)
    try:
        src = S3Source("s3://bkt", endpoint=f"http://127.0.0.1:{listener.getsockname()[1]}", unsigned=True)
        assert src._lean() is not None
        with pytest.raises(Exception) as caught:
            src._lean_get("obj", {"Range": "bytes=0-4999"}, memoryview(bytearray(5000)), 5000)
        assert is_transient(caught.value), repr(caught.value)
    finally:
        listener.close()


def test_connections_are_reused_only_after_a_whole_body(server):
    src = S3Source("s3://bkt", endpoint=server.url, unsigned=True)
    buf = bytearray(len(OBJECT))
    for start in range(0, len(OBJECT), 50_000):  # whole bodies: one connection carries every request
        src.fetch(b"obj", start, min(start + 50_000, len(OBJECT)), None, buf)
    pool = src._lean_http.connection_from_url(server.url)
    assert pool.num_connections == 1
    # a body read only in part (fewer bytes wanted than sent) must not go back to the pool with bytes unread
    resp_headers, got = src._lean_get("obj", {"Range": "bytes=0-99999"}, memoryview(bytearray(10)), 10)
    assert got == 10
    src.fetch(b"obj", 0, 1000, None, buf)
    assert bytes(buf[:1000]) == OBJECT[:1000]
    assert pool.num_connections == 2
