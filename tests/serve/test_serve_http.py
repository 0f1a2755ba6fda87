"""`ptolemy serve` with real HTTP clients (httpx, raw sockets, curl) against a real server subprocess: staged and
inline CARs of one mixed tree, byte for byte, ranges, HEAD, 404, 416, If-Range, tokens, disconnects, load."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ptolemy_tui.core.commp import CommP
from tests.serve.servekit import TOKEN, ServeProc, build_pair, cli, wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    url = f"sqlite:///{root / 'ptolemy.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(root / "xdg-data"))
        mp.setenv("XDG_STATE_HOME", str(root / "xdg-state"))
        build_pair(root, url)
        staged = json.loads(cli(url, "cars", "staged", "--json").out)["cars"]
        inline = json.loads(cli(url, "cars", "inline", "--json").out)["cars"]
        token_file = root / "token"
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
        log_file = str(root / "serve.log")
        server = ServeProc(url, "--token-file", str(token_file), "--base-url", "https://sp.example:7777",
                           log_file=log_file)
        try:
            yield {"url": url, "server": server, "staged": staged, "inline": inline, "root": root,
                   "log": log_file}
        finally:
            err = server.stop()
            assert TOKEN not in err
            with open(log_file) as fh:
                assert TOKEN not in fh.read()


def _bytes(car: dict) -> bytes:
    with open(car["path"], "rb") as fh:
        return fh.read()


def test_inline_build_wrote_no_car_and_recorded_the_same_cids(served):
    staged, inline = served["staged"], served["inline"]
    assert len(staged) == len(inline) >= 3
    for s, i in zip(staged, inline):
        assert (i["payload_cid"], i["piece_cid"], i["piece_cid_v2"], i["car_size"]) == \
               (s["payload_cid"], s["piece_cid"], s["piece_cid_v2"], s["car_size"])
        assert i["path"] == "" and os.path.getsize(s["path"]) == s["car_size"]
    assert not os.listdir(served["root"] / "stg-inline" / "inline") if (served["root"] / "stg-inline" / "inline").exists() else True


def test_full_bodies_and_200_random_ranges_equal_the_staged_car(served):
    server = served["server"]
    rnd = random.Random(13)
    with httpx.Client(headers=AUTH, timeout=30) as client:
        for s, i in zip(served["staged"], served["inline"]):
            want = _bytes(s)
            for cid in (s["piece_cid"], i["piece_cid_v2"]):  # v1 and v2 both name the piece
                r = client.get(server.url(cid))
                assert r.status_code == 200 and r.content == want
                assert r.headers["content-length"] == str(len(want)) and r.headers["accept-ranges"] == "bytes"
        cars = list(zip(served["staged"], [_bytes(s) for s in served["staged"]]))
        for n in range(200):
            s, want = cars[n % len(cars)]
            a = rnd.randrange(len(want))
            b = rnd.randrange(a, min(len(want), a + rnd.choice([1, 100, 70_000, 3_000_000])))
            r = client.get(server.url(s["piece_cid"]), headers={"Range": f"bytes={a}-{b}"})
            assert r.status_code == 206 and r.content == want[a:b + 1], (n, a, b)
            assert r.headers["content-range"] == f"bytes {a}-{b}/{len(want)}"
        # the inline project's view of the same piece: the server resolves by CID, so ask the inline server too
        r = client.get(server.url(cars[0][0]["piece_cid"]), headers={"Range": "bytes=-100"})
        assert r.status_code == 206 and r.content == cars[0][1][-100:]


def test_inline_ranges_equal_the_staged_car(tmp_path_factory, served):
    """A server restricted to the inline project regenerates; 200 ranges equal the staged CAR's bytes."""
    server = ServeProc(served["url"], "--project", "inline")
    try:
        rnd = random.Random(5)
        cars = [(i, _bytes(s)) for s, i in zip(served["staged"], served["inline"])]
        with httpx.Client(timeout=30) as client:
            for i, want in cars:
                r = client.get(server.url(i["piece_cid"]))
                assert r.status_code == 200 and r.content == want
                piece = CommP(deferred_prefix=0)
                piece.update(r.content)
                assert piece.digest().piece_cid_v1 == i["piece_cid"]  # CommP of the download = the record
            for n in range(200):
                i, want = cars[n % len(cars)]
                a = rnd.randrange(len(want))
                b = rnd.randrange(a, min(len(want), a + rnd.choice([1, 40, 262_200, 1_500_000])))
                r = client.get(server.url(i["piece_cid"]), headers={"Range": f"bytes={a}-{b}"})
                assert r.status_code == 206 and r.content == want[a:b + 1], (n, a, b)
            r = client.head(server.url(cars[0][0]["piece_cid"]))
            assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == str(len(cars[0][1]))
            assert r.headers["etag"] == f'"{cars[0][0]["piece_cid"]}"'
    finally:
        err = server.stop()
    assert "inline" in err and " 206 bytes=" in err and "sent=" in err  # every request logged with bytes and time


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_downloads_and_resumes(served, tmp_path):
    s = served["staged"][0]
    i = served["inline"][0]
    want = _bytes(s)
    server = served["server"]
    out = tmp_path / "dl.car"
    out.write_bytes(want[:12345])  # a partial download to resume
    auth = f"Authorization: Bearer {TOKEN}"
    r = subprocess.run(["curl", "-sSf", "-H", auth, "-C", "-", "-o", str(out), server.url(i["piece_cid"])],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == want
    r = subprocess.run(["curl", "-sSf", "-H", auth, "-r", "1000-1999", server.url(i["piece_cid"])],
                       capture_output=True, timeout=60)
    assert r.stdout == want[1000:2000]
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", server.url(s["piece_cid"])],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout == "401"


def test_head_404_416_and_if_range(served):
    server = served["server"]
    s = served["staged"][0]
    size = s["car_size"]
    want = _bytes(s)
    with httpx.Client(headers=AUTH, timeout=30) as client:
        r = client.head(server.url(s["piece_cid"]))
        assert r.status_code == 200 and r.headers["content-length"] == str(size) and r.content == b""
        r = client.head(server.url(s["piece_cid"]), headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.headers["content-range"] == f"bytes 10-19/{size}"
        for bad in ("baga6ea4seaqaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "not-a-cid",
                    "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4", "..%2F..%2Fetc%2Fpasswd"):
            r = client.get(server.url(bad))
            assert r.status_code == 404, bad
        assert client.get(f"{server.base}/{s['path']}").status_code == 404  # never a path
        for rng in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=0-1,5-6", "bytes=-0"):
            r = client.get(server.url(s["piece_cid"]), headers={"Range": rng})
            assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}", rng
        r = client.get(server.url(s["piece_cid"]), headers={"Range": "bytes=5-", "If-Range": f'"{s["piece_cid"]}"'})
        assert r.status_code == 206 and r.content == want[5:]
        r = client.get(server.url(s["piece_cid"]), headers={"Range": "bytes=5-", "If-Range": '"something-else"'})
        assert r.status_code == 200 and r.content == want
        r = client.get(server.url(s["piece_cid"]), headers={"Range": "items=0-5"})  # other units: ignored
        assert r.status_code == 200 and r.content == want


def test_token_required_and_refused(served):
    server = served["server"]
    cid = served["inline"][0]["piece_cid"]
    with httpx.Client(timeout=30) as client:
        r = client.get(server.url(cid))
        assert r.status_code == 401 and "required" in r.text and r.headers["www-authenticate"].startswith("Bearer")
        r = client.get(server.url(cid), headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and "wrong" in r.text and TOKEN not in r.text
        r = client.get(server.url(cid), headers={"Authorization": f"Basic {TOKEN}"})
        assert r.status_code == 401
        assert client.head(server.url(cid), headers=AUTH).status_code == 200


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "T"


def _transfers(url: str) -> list[dict]:
    from ptolemy_tui.services import pieces
    from ptolemy_tui.store import db

    db.open_database(url)
    try:
        return pieces.list_transfers(limit=1000)
    finally:
        db.close_database()


def test_client_disconnect_is_survived_and_recorded(served, tmp_path):
    """The server freezes (fault point) right after the headers; the client resets the connection; the server
    goes on, records the transfer as aborted, and serves the next request."""
    cars = [served["staged"][0], served["inline"][0]]
    for n, car in enumerate(cars):
        faults_dir = tmp_path / f"faults{n}"
        faults_dir.mkdir()
        server = ServeProc(served["url"], env={"PTOLEMY_FAULT_POINT": "serve-before-body",
                                               "PTOLEMY_FAULT_DIR": str(faults_dir)})
        try:
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(f"GET /piece/{car['piece_cid']} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            marker = faults_dir / "serve-before-body.reached"
            wait_until(marker.exists, what="the server at serve-before-body")
            wait_until(lambda: server.proc.pid and _stopped(server.proc.pid), what="the server to stop")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            sock.close()
            os.kill(server.proc.pid, signal.SIGCONT)
            with httpx.Client(timeout=30) as client:  # the server is still fine
                assert client.get(server.url(car["piece_cid"])).content == _bytes(served["staged"][0])
            wait_until(lambda: any(t["state"] == "aborted" and t["piece_cid"] == car["piece_cid"]
                                   for t in _transfers(served["url"])), what="the aborted transfer in the store")
        finally:
            server.stop()
    aborted = wait_until(lambda: [t for t in _transfers(served["url"]) if t["state"] == "aborted"],
                         what="the aborted transfers in the store")
    assert {t["piece_cid"] for t in aborted} >= {c["piece_cid"] for c in cars}
    assert all(t["bytes_sent"] < t["bytes_total"] for t in aborted)
    done = [t for t in _transfers(served["url"]) if t["state"] == "done"]
    assert done and all(t["client"].startswith("127.0.0.1") and t["bytes_sent"] == t["bytes_total"] for t in done)


def test_32_concurrent_range_requests(served):
    server = served["server"]
    cars = [(c, _bytes(s)) for c, s in zip(served["staged"] + served["inline"], served["staged"] * 2)]
    rnd = random.Random(32)
    jobs = []
    for n in range(32):
        car, want = cars[n % len(cars)]
        a = rnd.randrange(len(want) // 2)
        jobs.append((car["piece_cid"], a, len(want) - 1, want))

    def fetch(job):
        cid, a, b, want = job
        r = httpx.get(server.url(cid), headers={**AUTH, "Range": f"bytes={a}-{b}"}, timeout=60)
        return r.status_code == 206 and r.content == want[a:b + 1]

    with ThreadPoolExecutor(max_workers=32) as pool:
        assert all(pool.map(fetch, jobs))


def test_manifest_has_a_url_column_once_a_base_url_is_configured(served):
    r = cli(served["url"], "manifest", "inline", "--format", "json")
    rows = json.loads(r.out)["cars"]
    assert all(row["url"] == f"https://sp.example:7777/piece/{row['commp']}" for row in rows)
    assert all(row["file_name"] == f"{row['commp']}.car" and row["path"] == "" for row in rows)
    r = cli(served["url"], "manifest", "staged", "--base-url", "http://other:1/")
    header = r.out.splitlines()[0].split(",")
    assert header[-1] == "url" and r.out.splitlines()[1].endswith(f"http://other:1/piece/{served['staged'][0]['piece_cid']}")


def test_verify_regenerates_inline_cars(served):
    doc = json.loads(cli(served["url"], "verify", "inline", "--json").out)
    assert doc["ok"] and len(doc["cars"]) == len(served["inline"])


def test_car_export_writes_the_staged_bytes(served, tmp_path):
    i, s = served["inline"][1], served["staged"][1]
    out = tmp_path / "exported.car"
    r = cli(served["url"], "car", "export", "inline", str(i["container"]), "-o", str(out), "--json")
    assert json.loads(r.out)["piece_cid"] == i["piece_cid"]
    assert out.read_bytes() == _bytes(s)
    from tests.cli.helpers import run_ptolemy

    again = run_ptolemy("car", "export", "inline", str(i["container"]), "-o", str(out), env={"PTOLEMY_DB": served["url"]})
    assert again.code == 2 and again.err.count("\n") == 1 and "exists" in again.err
    staged = run_ptolemy("car", "export", "staged", str(s["container"]), "-o", str(tmp_path / "x.car"),
                         env={"PTOLEMY_DB": served["url"]})
    assert staged.code == 2 and "not inline" in staged.err and not (tmp_path / "x.car").exists()


def test_slow_clients_hold_up_no_one_and_memory_stays_bounded(served, tmp_path):
    """Eight clients that ask for a 24 MiB inline CAR and never read: the server keeps serving others at once,
    and its memory grows by less than a bounded amount per stalled connection."""
    import psutil

    src = tmp_path / "bigsrc"
    src.mkdir()
    (src / "big.bin").write_bytes(random.Random(24).randbytes(24 << 20))
    url = served["url"]
    cli(url, "project", "create", "big", "--target", str(src), "--staging", str(tmp_path / "stg"),
        "--car-size", "32MiB", "--shard-size", "32MiB", "--load-type", "inline")
    cli(url, "scan", "big")
    cli(url, "containerize", "big")
    cli(url, "build", "big", "--wait")
    big = json.loads(cli(url, "cars", "big", "--json").out)["cars"][0]
    server = served["server"]
    proc = psutil.Process(server.proc.pid)
    before = proc.memory_info().rss
    stalled = []
    try:
        for _ in range(8):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(f"GET /piece/{big['piece_cid']} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
                         .encode())
            stalled.append(sock)
        wait_until(lambda: sum(t["live"] and t["piece_cid"] == big["piece_cid"] for t in _transfers(url)) >= 8,
                   what="eight live transfers")
        with httpx.Client(headers=AUTH, timeout=30) as client:
            for s, i in zip(served["staged"], served["inline"]):
                assert client.get(server.url(i["piece_cid"])).content == _bytes(s)
        grown = proc.memory_info().rss - before
        assert grown < 8 * 16 * 1024 * 1024, grown
        live = [t for t in _transfers(url) if t["live"] and t["piece_cid"] == big["piece_cid"]]
        assert len(live) == 8 and all(t["bytes_sent"] < t["bytes_total"] for t in live)  # really stalled
    finally:
        for sock in stalled:
            sock.close()
