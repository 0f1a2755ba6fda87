"""`ptolemy serve`: pieces over HTTP for storage providers' deal software, on aiohttp.

    GET|HEAD /piece/<pieceCID>      (v1 `baga…` or v2 `bafkzcib…`; only CIDs the store knows)

The body is the CAR: a staged CAR straight from its file with `loop.sendfile` (zero-copy, in 32 MiB steps so
progress can be recorded), an inline CAR regenerated from its plan and its sources (core.carplan) on a small
thread pool, every leaf re-hashed against its recorded digest before it is sent. Single byte ranges give 206
with Content-Range; several ranges in one request, or a range past the end, give 416 (stated in the README).
`If-Range` with the ETag (the quoted piece CID: it names exactly these bytes) keeps the range, anything else
sends the whole CAR. With a token, every request needs `Authorization: Bearer <token>`; the token is compared in
constant time and never logged.

Memory per connection is bounded: nothing for a staged CAR (the kernel copies); for an inline one the read
buffer (4 MiB), the batch being sent and the one made ahead of it, since each write waits for the socket to
drain before the next batch is made.

Every request is logged (client, method, CID, status, range, bytes sent, seconds), and transfers are written
to the store about once a second so the TUI can show them live.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ptolemy_tui import faults
from ptolemy_tui.core.car import SourceChanged
from ptolemy_tui.services import pieces

log = logging.getLogger("ptolemy.serve")

SENDFILE_STEP = 32 * 1024 * 1024  # bytes per sendfile call: progress granularity for staged CARs
CACHE_SECONDS = 5.0               # a piece's record (and plan) is re-read from the store after this
FLUSH_SECONDS = 1.0               # transfers are written to the store this often
REGEN_THREADS = 8                 # inline regeneration (read + SHA-256, both release the GIL)
CAR_TYPE = "application/vnd.ipld.car; version=1"

_RANGE = re.compile(r"^\s*bytes\s*=\s*(.+)$", re.IGNORECASE)
_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class Unsatisfiable(Exception):
    """A Range header this server will not answer with 206: 416."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) for one byte range; None to send everything; Unsatisfiable for 416.

    A header that is not a byte range at all is ignored (RFC 9110 §14.2), as is any range unit but bytes.
    """
    if not header:
        return None
    m = _RANGE.match(header)
    if m is None:
        return None
    specs = m.group(1).split(",")
    if len(specs) > 1:
        raise Unsatisfiable("multiple ranges in one request are not supported: ask for one range at a time")
    s = _SPEC.match(specs[0])
    if s is None or (not s.group(1) and not s.group(2)):
        return None
    first, last = s.group(1), s.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise Unsatisfiable("an empty suffix range")
        return max(0, size - n), size
    a = int(first)
    if a >= size:
        raise Unsatisfiable(f"range starts at {a}, the CAR has {size} bytes")
    if last:
        b = int(last)
        if b < a:
            return None  # invalid: ignored
        return a, min(b + 1, size)
    return a, size


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 7777
    project_ids: list[int] | None = None
    token: bytes | None = None
    source_root: str | None = None
    verify: bool = True


@dataclass(eq=False)
class Live:
    """One transfer in flight (mirrored into the store's Transfer table)."""

    client: str
    piece: pieces.Piece
    start: int
    end: int
    status: int
    sent: int = 0
    started: float = field(default_factory=time.time)
    mono: float = field(default_factory=time.monotonic)
    state: str = "active"
    message: str | None = None
    row: dict = field(default_factory=dict)
    last_sent: int = 0
    last_mono: float = 0.0
    rate: float = 0.0

    def to_row(self, server: str) -> dict[str, Any]:
        row = self.row
        row.update(server=server, client=self.client, project_id=self.piece.project_id,
                   piece_cid=self.piece.piece_cid, inline=self.piece.inline, range_start=self.start,
                   range_end=self.end, bytes_sent=self.sent, rate=self.rate, status=self.status,
                   state=self.state, message=self.message, started_at=self.started, updated_at=time.time(),
                   finished_at=time.time() if self.state != "active" else None)
        return row


class Server:
    def __init__(self, config: Config):
        self.config = config
        self.name = pieces.server_name()
        self.cache: dict[str, tuple[float, pieces.Piece | None]] = {}
        self.live: set[Live] = set()
        self.finished: list[Live] = []
        self.pool = ThreadPoolExecutor(max_workers=REGEN_THREADS, thread_name_prefix="regen")
        self.db_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="store")
        self.flusher: asyncio.Task | None = None

    # ------------------------------------------------ app

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024)
        app.router.add_get("/piece/{cid}", self.handle_piece)  # HEAD too
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, _app) -> None:
        await self._db(pieces.end_server_transfers, self.name, "a server with this name restarted")
        await self._db(pieces.drop_old_transfers)
        self.flusher = asyncio.create_task(self._flush_loop())

    async def _cleanup(self, _app) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
        for t in list(self.live):
            t.state, t.message = "aborted", "the server stopped"
            self.live.discard(t)
            self.finished.append(t)
        await self._flush()
        self.pool.shutdown(wait=False)
        self.db_pool.shutdown(wait=True)

    async def _db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.db_pool, fn, *args)

    # ------------------------------------------------ transfers

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self._flush()
            except Exception:  # noqa: BLE001 - a store hiccup must not stop serving; the next flush retries
                log.warning("could not record transfers in the store", exc_info=True)

    async def _flush(self) -> None:
        at = time.monotonic()
        for t in self.live:
            dt = at - t.last_mono if t.last_mono else at - t.mono
            if dt > 0:
                t.rate = (t.sent - t.last_sent) / dt
            t.last_sent, t.last_mono = t.sent, at
        done, self.finished = self.finished, []
        rows = [t.to_row(self.name) for t in list(self.live) + done]
        if rows:
            await self._db(pieces.save_transfers, rows)

    # ------------------------------------------------ requests

    def _authorised(self, request: web.Request) -> str | None:
        """None when the request may go on, else why not (401)."""
        token = self.config.token
        if token is None:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return "a bearer token is required"
        if not hmac.compare_digest(given.strip().encode(), token):
            return "the bearer token is wrong"
        return None

    async def _piece(self, cid: str) -> pieces.Piece | None:
        at = time.monotonic()
        hit = self.cache.get(cid)
        if hit is not None and at - hit[0] < CACHE_SECONDS:
            return hit[1]
        piece = await self._db(pieces.find_piece, cid, self.config.project_ids, self.config.source_root)
        if len(self.cache) > 1024:
            self.cache.clear()
        self.cache[cid] = (at, piece)
        return piece

    def _log(self, request: web.Request, status: int, cid: str, span: str, sent: int, started: float,
             note: str = "") -> None:
        seconds = time.monotonic() - started
        log.info("%s %s /piece/%s %d %s sent=%d %.3fs%s", request.get("client") or _client(request),
                 request.method, cid, status, span, sent, seconds, f" {note}" if note else "")

    async def handle_piece(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        cid = request.match_info["cid"]
        client = request["client"] = _client(request)  # now: the transport is gone once the client is
        refused = self._authorised(request)
        if refused:
            self._log(request, 401, cid, "-", 0, started, refused)
            return web.Response(status=401, text=refused + "\n", headers={"WWW-Authenticate": 'Bearer realm="ptolemy"'})
        piece = await self._piece(cid)
        if piece is None:
            self._log(request, 404, cid, "-", 0, started, "unknown piece")
            return web.Response(status=404, text=f"unknown piece CID: {cid}\n")
        size = piece.car_size
        headers = {"Accept-Ranges": "bytes", "ETag": piece.etag, "Content-Type": CAR_TYPE}
        if_range = request.headers.get("If-Range")
        try:
            span = parse_range(request.headers.get("Range"), size)
        except Unsatisfiable as exc:
            if if_range is None or if_range.strip() == piece.etag:
                self._log(request, 416, cid, request.headers.get("Range", ""), 0, started, str(exc))
                return web.Response(status=416, text=f"{exc}\n",
                                    headers={"Content-Range": f"bytes */{size}", **headers})
            span = None
        if span is not None and if_range is not None and if_range.strip() != piece.etag:
            span = None  # the client's copy is of other bytes: send all of ours
        start, end = span if span is not None else (0, size)
        status = 206 if span is not None else 200
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        shown_span = f"bytes={start}-{end - 1}" if status == 206 else "-"

        problem = await self._problem(piece, start, end)
        if problem:
            self._log(request, 500, cid, shown_span, 0, started, problem)
            return web.Response(status=500, text=f"{problem}\n")

        if request.method == "HEAD":
            resp = web.StreamResponse(status=status, headers=headers)
            resp.content_length = end - start
            await resp.prepare(request)
            await resp.write_eof()
            self._log(request, status, cid, shown_span, 0, started)
            return resp

        live = Live(client, piece, start, end, status)
        try:
            if piece.inline:
                resp = await self._send_inline(request, piece, live, headers)
            else:
                resp = await self._send_staged(request, piece, live, headers)
            if live.state == "active":
                live.state = "done"
        except (ConnectionError, asyncio.CancelledError) as exc:
            live.state, live.message = "aborted", "the client went away"
            self._log(request, status, cid, shown_span, live.sent, started, "client disconnected")
            self._finish(live)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise  # aiohttp closes the connection
        except _Failed as exc:
            live.state, live.message = "failed", str(exc)
            self._log(request, status, cid, shown_span, live.sent, started, f"failed: {exc}")
            self._finish(live)
            if exc.response is not None:
                return exc.response
            raise ConnectionResetError(str(exc)) from None  # headers went out: cut the body short
        except Exception as exc:
            live.state, live.message = "failed", f"internal error: {exc.__class__.__name__}: {exc}"
            log.exception("%s /piece/%s: internal error", _client(request), cid)
            self._finish(live)
            raise
        self._log(request, status, cid, shown_span, live.sent, started, "inline" if piece.inline else "")
        self._finish(live)
        return resp

    def _finish(self, live: Live) -> None:
        elapsed = time.monotonic() - live.mono
        live.rate = live.sent / elapsed if elapsed > 0 else 0.0
        self.live.discard(live)
        self.finished.append(live)

    async def _problem(self, piece: pieces.Piece, start: int, end: int) -> str | None:
        """Why the bytes cannot be served as built (500), checked before any header goes out; else None."""
        if not piece.inline:
            try:
                st = await asyncio.get_running_loop().run_in_executor(self.pool, os.stat, piece.path)
            except OSError as exc:
                return f"the staged CAR cannot be read: {exc.strerror}: {piece.path}"
            if st.st_size != piece.car_size:
                return f"the staged CAR has {st.st_size} bytes, {piece.car_size} were recorded: {piece.path}"
            return None
        if piece.stale_reason:
            return f"inline CAR is stale: {piece.stale_reason}"
        if start == end:
            return None
        needed = piece.plan.sources_in(start, end)
        reason = await asyncio.get_running_loop().run_in_executor(self.pool, piece.changed_source, needed)
        if reason:
            await self._stale(piece, reason)
            return f"inline CAR is stale: {reason}"
        return None

    async def _stale(self, piece: pieces.Piece, reason: str) -> None:
        log.error("piece %s (project %s, container %d) marked stale: %s", piece.piece_cid, piece.project,
                  piece.container, reason)
        try:
            await self._db(pieces.mark_stale, piece, reason)
        except Exception:  # noqa: BLE001 - the request fails either way; the log line above says why
            log.warning("could not mark piece %s stale in the store", piece.piece_cid, exc_info=True)
        self.cache.pop(piece.piece_cid, None)
        if piece.piece_cid_v2:
            self.cache.pop(piece.piece_cid_v2, None)

    async def _send_staged(self, request, piece, live: Live, headers) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        f = await loop.run_in_executor(self.pool, open, piece.path, "rb")
        try:
            resp = web.StreamResponse(status=live.status, headers=headers)
            resp.content_length = live.end - live.start
            await resp.prepare(request)
            self.live.add(live)
            faults.reach("serve-before-body")
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("connection lost")
            pos = live.start
            while pos < live.end:
                n = min(SENDFILE_STEP, live.end - pos)
                try:
                    await loop.sendfile(transport, f, pos, n)
                except NotImplementedError:  # a transport without sendfile: plain reads, one step at a time
                    data = await loop.run_in_executor(self.pool, os.pread, f.fileno(), n, pos)
                    if len(data) != n:
                        raise _Failed("the staged CAR is shorter than recorded") from None
                    await resp.write(data)
                pos += n
                live.sent = pos - live.start
            await resp.write_eof()
            return resp
        finally:
            f.close()

    async def _send_inline(self, request, piece, live: Live, headers) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        reader = piece.reader()
        gen = piece.plan.iter_range(live.start, live.end, reader, verify=self.config.verify)
        resp = None
        try:
            first = await loop.run_in_executor(self.pool, _next, gen)
            resp = web.StreamResponse(status=live.status, headers=headers)
            resp.content_length = live.end - live.start
            await resp.prepare(request)
            self.live.add(live)
            faults.reach("serve-before-body")
            chunk = first
            while chunk is not None:
                # the next batch is read and hashed on the pool while this one goes out: one batch ahead, no more
                ahead = loop.run_in_executor(self.pool, _next, gen)
                try:
                    await resp.write(chunk)
                finally:
                    if not ahead.done():
                        await asyncio.wait([ahead])  # never leave the generator running on its own
                live.sent += len(chunk)
                chunk = await ahead
            await resp.write_eof()
            return resp
        except SourceChanged as exc:
            reason = f"source changed since the build: {_shown(piece, exc)}"
            await self._stale(piece, reason)
            if resp is None:
                raise _Failed(reason, web.Response(status=500, text=f"inline CAR is stale: {reason}\n")) from None
            raise _Failed(reason) from None
        except OSError as exc:
            if isinstance(exc, ConnectionError):
                raise
            reason = f"cannot read a source: {exc.strerror or exc}"
            if resp is None:
                raise _Failed(reason, web.Response(status=500, text=f"{reason}\n")) from None
            raise _Failed(reason) from None
        finally:
            gen.close()
            await loop.run_in_executor(self.pool, reader.close)


class _Failed(Exception):
    def __init__(self, message: str, response: web.Response | None = None):
        super().__init__(message)
        self.response = response


def _next(gen):
    return next(gen, None)


def _shown(piece: pieces.Piece, exc: SourceChanged) -> str:
    m = re.match(r"source (\d+) ", str(exc))
    if m and int(m.group(1)) < len(piece.sources):
        return piece.shown_source(int(m.group(1)))
    return str(exc)


def _client(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return request.remote or "?"


async def run(config: Config, *, on_ready=None, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (or the task is cancelled); `on_ready(host, port)` once listening."""
    server = Server(config)
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=128, reuse_address=True)
    await site.start()
    sockets = [s for s in (site._server.sockets if site._server else [])]  # the real port when asked for 0
    host, port = (sockets[0].getsockname()[:2] if sockets else (config.host, config.port))
    if on_ready is not None:
        on_ready(host, port)
    try:
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        await runner.cleanup()
