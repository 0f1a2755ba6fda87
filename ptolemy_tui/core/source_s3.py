"""S3Source: objects under `s3://BUCKET[/PREFIX]` on AWS or any S3-compatible store, read with boto3.

Listing: ListObjectsV2 with Delimiter "/", 1000 keys a page, a prefix at a time on several threads (a flat
listing of 100k keys from rclone takes twice as long as 8 prefix listings at once), streamed into the scan's
chunk layout (core.local_walk): prefixes become directories (announced in their parent's chunk before any chunk
of their own), objects regular files whose change token is (size, LastModified, ETag). Keys that cannot be
UnixFS names are scan errors (see S3Walker).

Reading: a worker announces the ranges it will read, in the order the CAR writer reads them (`plan`), and a
`Prefetcher` keeps several range GETs in flight ahead of the reader — PART bytes each, at most READ_AHEAD bytes
and INFLIGHT requests at a time (urllib3 with botocore's SigV4 signer where the URL is certain, else boto3) — so
a 20-50 ms round trip overlaps the CPU work, across small objects too.
Read buffers hold at most READ_AHEAD + 2 x PART bytes (32 MiB), whatever the object sizes; big parts reuse
pooled buffers (freeing and reallocating 8 MiB ones fragments the heap), and nothing is written to local disk.
Every response's ETag, total size (Content-Range) and Last-Modified must equal the scan's: the first range's
answer is the check before an object is read, the last one's the check after (GETs also send If-Match, for
servers that honour it). Transient errors (5xx, throttling, timeouts, resets, a body cut short) are retried with
exponential backoff for up to RETRY_SECONDS; then the read fails with one line.

boto3 because it accepts the 200-with-Content-Range answer `rclone serve s3` gives to a ranged GET (obstore
refuses it), it reads the standard AWS credential chain and profiles, and measured fast enough (README).
"""
from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from ptolemy_tui.core.local_walk import ListingPool
from ptolemy_tui.settings import current
from ptolemy_tui.core.source import EntryState, SourceChanged, SourceError, SourceMissing, text

PAGE_KEYS = 1000
PART = 8 << 20            # bytes per range GET
SMALL_PART = 1 << 20      # parts up to this size get a buffer of their own; bigger ones a pooled PART buffer
READ_AHEAD = 16 << 20     # bytes fetched ahead of the reader, at most (more only cost memory in tests)
INFLIGHT = 32             # range GETs in flight, at most (small objects: one GET each)
RETRY_SECONDS = 120.0     # a transient failure is retried this long (PTOLEMY_S3_RETRY_SECONDS)
CHUNK_ENTRIES = 4096

_TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling",
                    "ThrottlingException", "RequestTimeTooSkewed", "503", "500", "502", "504"}
_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "AllAccessDisabled",
                 "InvalidToken", "ExpiredToken", "AccountProblem"}


class SourceDenied(SourceError):
    """The credentials (or their absence) do not allow the request."""


class SourceUnreachable(SourceError):
    """The endpoint does not answer (after retries)."""


def parse_target(target: str) -> tuple[str, str]:
    """s3://BUCKET[/PREFIX] -> (bucket, prefix without leading or trailing slashes)."""
    if not target.startswith("s3://"):
        raise SourceError(f"{target}: not an s3:// URL")
    rest = target[5:]
    bucket, _, prefix = rest.partition("/")
    if not bucket or not all(c.isalnum() or c in "-._" for c in bucket) or len(bucket) > 255:
        raise SourceError(f"{target}: give s3://BUCKET or s3://BUCKET/PREFIX with a valid bucket name")
    return bucket, prefix.strip("/")


def retry_seconds() -> float:
    return current().s3_retry_seconds


def _etag(raw: str | None) -> str | None:
    return raw.strip('"') if raw else raw


def _mtime_ns(dt) -> int:
    """LastModified to whole seconds: listings give milliseconds, HEAD and GET headers only seconds."""
    return int(dt.timestamp()) * 1_000_000_000 if dt is not None else 0


def _code(exc) -> str:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code or (str(status) if status else "")


def _status(exc) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_transient(exc: BaseException) -> bool:
    from botocore import exceptions as bx
    from urllib3 import exceptions as ux

    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectionClosedError, bx.ReadTimeoutError,
                        bx.ConnectTimeoutError, bx.ResponseStreamingError, bx.IncompleteReadError,
                        ux.ProtocolError, ux.TimeoutError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, bx.ClientError):
        return _code(exc) in _TRANSIENT_CODES or _status(exc) >= 500
    return False


class S3Source:
    kind = "s3"

    def __init__(self, target: str, *, endpoint: str | None = None, region: str | None = None,
                 profile: str | None = None, unsigned: bool = False):
        self.bucket, self.prefix = parse_target(target)
        self.location = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.base = self.prefix + "/" if self.prefix else ""
        self.endpoint = endpoint or None
        self.region = region or None
        self.profile = profile or None
        self.unsigned = bool(unsigned)
        self.retry_seconds = retry_seconds()
        self._client = None
        self._lock = threading.Lock()
        self._lean_http = None
        self._lean_tried = False
        self.prefetcher: Prefetcher | None = None
        self.spare: list[bytearray] = []  # read buffers of PART bytes, reused from container to container
        self.on_retry = None  # tests: called with (exception, attempt) before each backoff

    # -- the client

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self):
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config
        from botocore import exceptions as bx

        # No parameter validation and no flexible checksums: a quarter less CPU a request (measured: 1.24 -> 0.8 ms
        # for a small ranged GET), which is what many small objects cost; every byte is hashed into the CIDs anyway.
        options = dict(retries={"mode": "standard", "max_attempts": 2}, max_pool_connections=INFLIGHT + 4,
                       connect_timeout=5, read_timeout=30, tcp_keepalive=True, parameter_validation=False,
                       request_checksum_calculation="when_required", response_checksum_validation="when_required")
        if self.unsigned:
            options["signature_version"] = UNSIGNED
        if self.endpoint:
            options["s3"] = {"addressing_style": "path"}  # S3-compatible stores rarely do virtual-hosted buckets
        try:
            session = boto3.session.Session(profile_name=self.profile)
        except bx.ProfileNotFound:
            raise SourceError(f"AWS profile {self.profile!r} is not in the shared config or credentials files: "
                              "fix --s3-profile") from None
        region = self.region or session.region_name or ("us-east-1" if self.endpoint else None)
        self._session, self._region = session, region
        return session.client("s3", endpoint_url=self.endpoint, region_name=region, config=Config(**options))

    def _lean(self):
        """The range GET without botocore's request pipeline (a third of its CPU a request, which is what a
        bucket of small objects costs): urllib3, the same connection settings, SigV4 headers from botocore's own
        signer. Only where the URL is certain: a given endpoint (path-style), or AWS with a known region and a
        bucket name that is a DNS label; else None, and boto3 does the request."""
        with self._lock:
            if self._lean_http is not None or self._lean_tried:
                return self._lean_http
            self._lean_tried = True
        self.client  # noqa: B018 - the session and region
        import urllib.parse as up

        import urllib3

        if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
            return None  # proxies as botocore reads them: let it do the requests
        # The CA bundle botocore would verify with (its order: the client's ca_bundle setting, AWS_CA_BUNDLE
        # included, then REQUESTS_CA_BUNDLE); a plain-http endpoint has none to verify.
        ca_certs = None
        if not (self.endpoint or "").startswith("http://"):
            core = getattr(self._session, "_session", None)  # boto3's botocore session holds the merged config
            configured = core.get_config_variable("ca_bundle") if core is not None else os.environ.get("AWS_CA_BUNDLE")
            ca_certs = configured or os.environ.get("REQUESTS_CA_BUNDLE")
        if self.endpoint:
            base = f"{self.endpoint.rstrip('/')}/{self.bucket}/"
        elif self._region and all(c.isalnum() or c == "-" for c in self.bucket):
            base = f"https://{self.bucket}.s3.{self._region}.amazonaws.com/"
        else:
            return None
        credentials = None if self.unsigned else self._session.get_credentials()
        if not self.unsigned and credentials is None:
            return None  # boto3 gives the one-line "no credentials" answer
        http = urllib3.PoolManager(maxsize=INFLIGHT + 4, retries=False, ca_certs=ca_certs or None,
                                   timeout=urllib3.Timeout(connect=5, read=30))
        self._lean_url = lambda key: base + up.quote(key, safe="/~")
        self._lean_credentials = credentials
        with self._lock:
            self._lean_http = http
        return http

    def _lean_get(self, key: str, headers: dict, view: memoryview, want: int) -> tuple[dict, int]:
        """GET with urllib3 into view; the response headers and how many bytes. HTTP errors raise a ClientError
        shaped like botocore's, so retries and messages are the same either way."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.exceptions import ClientError

        url = self._lean_url(key)
        if self._lean_credentials is not None:
            request = AWSRequest(method="GET", url=url, headers=headers)
            S3SigV4Auth(self._lean_credentials.get_frozen_credentials(), "s3", self._region).add_auth(request)
            headers = dict(request.headers.items())
        resp = self._lean_http.request("GET", url, headers=headers, preload_content=False, redirect=False)
        reuse = False  # the connection goes back to the pool only when its answer was read to the end
        try:
            if resp.status not in (200, 206):
                body = resp.read(65536).decode("utf-8", "replace")
                code = body.partition("<Code>")[2].partition("</Code>")[0] or str(resp.status)
                raise ClientError({"Error": {"Code": code, "Message": ""},
                                   "ResponseMetadata": {"HTTPStatusCode": resp.status}}, "GetObject")
            got, reuse = _read_body(resp, view, want)
            return dict(resp.headers.items()), got
        finally:
            if reuse:
                resp.release_conn()
            else:
                resp.close()

    def close(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.close()
            self.prefetcher = None

    # -- names

    def key(self, rel: bytes) -> str:
        return self.base + rel.decode("utf-8", "surrogateescape")

    def describe(self, rel: bytes) -> str:
        return f"s3://{self.bucket}/{text(self.key(rel).encode('utf-8', 'surrogateescape'))}"

    label = describe

    # -- errors

    def explain(self, exc: BaseException, what: str) -> SourceError | SourceChanged:
        """One line for the operator about a failed request."""
        from botocore import exceptions as bx

        where = self.endpoint or "AWS S3"
        if isinstance(exc, SourceError):
            return exc
        if isinstance(exc, bx.NoCredentialsError):
            return SourceDenied(f"{self.location}: no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY, or --s3-profile NAME, or --no-sign-request for a public bucket")
        if isinstance(exc, bx.ProfileNotFound):
            return SourceError(f"AWS profile {self.profile!r} not found: fix --s3-profile")
        from urllib3 import exceptions as ux

        if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, ux.NewConnectionError,
                            ux.ConnectTimeoutError)):
            return SourceUnreachable(f"cannot reach the S3 endpoint {where}: check --s3-endpoint and the network")
        if isinstance(exc, bx.ClientError):
            code = _code(exc)
            if code in ("PreconditionFailed", "412"):
                return SourceChanged(f"source changed since scan: {what}")
            if code == "NoSuchBucket":
                return SourceMissing(f"bucket {self.bucket!r} does not exist at {where}: check the bucket name "
                                     "(and --s3-endpoint/--s3-region)")
            if code in ("NoSuchKey", "404", "NotFound"):
                return SourceMissing(f"{what}: no such object")
            if self.unsigned and _status(exc) in (400, 401, 403):  # rclone: 400 UnsupportedAlgorithm
                return SourceDenied(f"access denied to {self.location} for anonymous requests ({code}): drop "
                                    "--no-sign-request and give credentials (AWS_PROFILE or --s3-profile)")
            if code in _DENIED_CODES:
                return SourceDenied(f"access denied to {self.location} ({code}): check the credentials "
                                    "(AWS_PROFILE or --s3-profile, AWS_ACCESS_KEY_ID) or use --no-sign-request "
                                    "for a public bucket")
            if code in ("PermanentRedirect", "301", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"):
                return SourceError(f"{self.location} is in another region: give --s3-region")
            return SourceError(f"{what}: {code or exc.__class__.__name__}")
        if is_transient(exc):
            return SourceUnreachable(f"{what}: the S3 endpoint {where} kept failing for "
                                     f"{self.retry_seconds:.0f}s ({exc.__class__.__name__})")
        return SourceError(f"{what}: {exc.__class__.__name__}: {exc}")

    def call(self, what: str, fn, *args, **kwargs):
        """fn(*args, **kwargs), retried with backoff while it fails transiently; errors explained."""
        deadline = time.monotonic() + self.retry_seconds
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - sorted below
                if not is_transient(exc) or time.monotonic() >= deadline:
                    raise self.explain(exc, what) from None
                attempt += 1
                if self.on_retry is not None:
                    self.on_retry(exc, attempt)
                pause = min(5.0, 0.1 * 2 ** min(attempt, 6)) * (0.5 + random.random() / 2)
                time.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    # -- the seam

    def check(self) -> None:
        """List one key under the root: an unreachable endpoint, a missing bucket and denied access each give
        their own one-line SourceError. Not retried for long: this answers a person waiting at a form."""
        saved, self.retry_seconds = self.retry_seconds, 0.0
        try:
            self.call(self.location, self.client.list_objects_v2, Bucket=self.bucket, Prefix=self.base, MaxKeys=1)
        finally:
            self.retry_seconds = saved

    def walker(self, threads: int, out, cancel, mode: str = "process"):
        return S3Walker(self, out, cancel, threads)

    def stat(self, rel: bytes) -> EntryState:
        p = self.prefetcher
        if p is not None:
            state = p.state_of(rel)
            if state is not None:
                return state
        key = self.key(rel)
        try:
            head = self.call(self.describe(rel), self.client.head_object, Bucket=self.bucket, Key=key)
        except SourceMissing:
            raise SourceMissing(f"no such object: {self.describe(rel)}") from None
        return EntryState("file", int(head["ContentLength"]), _mtime_ns(head.get("LastModified")),
                          etag=_etag(head.get("ETag")))

    def plan(self, items: list[tuple[bytes, int, int, str | None]]) -> None:
        """The (rel, offset, length, expected ETag) ranges the next reads take, in order: start fetching."""
        self.close()
        self.prefetcher = Prefetcher(self, items)

    def open(self, rel: bytes, offset: int = 0, length: int = -1):
        p = self.prefetcher
        if p is not None:
            reader = p.open(rel, offset, length)
            if reader is not None:
                return reader
        # not planned: a prefetcher of its own for this one range
        if length < 0:
            length = self.stat(rel).size - offset
        return Prefetcher(self, [(rel, offset, length, None)], own=True).open(rel, offset, length)

    # -- ranges

    def fetch(self, rel: bytes, start: int, end: int, etag: str | None, buf: bytearray) -> tuple[int, EntryState]:
        """Bytes [start, end) of the object into buf (a HEAD when empty): how many, and the object's state from
        the response headers. The body is read with readinto, straight into buf (half the CPU of read())."""
        key = self.key(rel)
        shown = self.describe(rel)
        if end <= start:
            return 0, self.stat_direct(rel)
        want = end - start
        kwargs = dict(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")
        if etag:
            kwargs["IfMatch"] = etag
        view = memoryview(buf)
        http = self._lean()

        def lean_get():
            headers = {"Range": kwargs["Range"]}
            if etag:
                headers["If-Match"] = etag
            raw, got = self._lean_get(key, headers, view, want)
            h = {k.lower(): v for k, v in raw.items()}
            modified = h.get("last-modified")
            resp = {"ContentRange": h.get("content-range", ""), "ContentLength": int(h.get("content-length") or got),
                    "ETag": h.get("etag"),
                    "LastModified": email.utils.parsedate_to_datetime(modified) if modified else None}
            return resp, got

        def get():
            resp = self.client.get_object(**kwargs)
            body = resp["Body"]
            try:
                return resp, _fill(body.readinto, view, want)
            finally:
                body.close()

        try:
            resp, got = self.call(shown, lean_get if http is not None else get)
        except SourceMissing:
            raise SourceMissing(f"source object vanished since scan: {shown}") from None
        content_range = resp.get("ContentRange") or ""
        if not content_range and int(resp.get("ContentLength", 0)) != want:
            raise SourceError(f"{shown}: the server ignored the byte range (no Content-Range): it cannot be read "
                              "in parts")
        total = content_range.rpartition("/")[2]
        size = int(total) if total.isdigit() else int(resp.get("ContentLength", got))
        state = EntryState("file", size, _mtime_ns(resp.get("LastModified")), etag=_etag(resp.get("ETag")))
        if got != want and size >= end:
            raise SourceUnreachable(f"{shown}: asked for {want} bytes, the server sent {got}")
        return got, state  # fewer than planned when the object is shorter now: the reader sees a short read

    def stat_direct(self, rel: bytes) -> EntryState:
        key = self.key(rel)
        try:
            head = self.call(self.describe(rel), self.client.head_object, Bucket=self.bucket, Key=key)
        except SourceMissing:
            raise SourceMissing(f"source object vanished since scan: {self.describe(rel)}") from None
        return EntryState("file", int(head["ContentLength"]), _mtime_ns(head.get("LastModified")),
                          etag=_etag(head.get("ETag")))


def _fill(readinto, view: memoryview, want: int) -> int:
    """readinto(view[got:want]) until `want` bytes or the end of the body: how many came."""
    got = 0
    while got < want:
        n = readinto(view[got:want])
        if not n:
            break
        got += n
    return got


def _read_body(resp, view: memoryview, want: int) -> tuple[int, bool]:
    """Up to `want` bytes of a urllib3 response's body into view: how many, and whether the body ended there
    (the connection can go back to the pool). Read through the http.client response underneath, straight into
    view: urllib3 2's own readinto reads a new bytes object and copies it, and http.client's read(n) copies once
    more (measured on 64 MiB objects: 0.44-0.47 CPU-s per GB through urllib3, 0.37-0.38 this way). Errors are
    urllib3's, as its own reads raise them."""
    import http.client

    from urllib3 import exceptions as ux

    raw = getattr(resp, "_fp", None)
    if raw is None or not hasattr(raw, "readinto") or resp.headers.get("content-encoding"):
        got = _fill(resp.readinto, view, want)
        return got, got < want or not resp.read(1)
    try:
        got = _fill(raw.readinto, view, want)
        if got < want and raw.length:  # http.client ends a body cut short quietly; urllib3 calls it an error
            raise http.client.IncompleteRead(bytes(0), raw.length)
        return got, raw.isclosed() or not raw.read(1)
    except (http.client.HTTPException, OSError) as exc:
        raise ux.ProtocolError(f"connection broken: {exc!r}", exc) from exc


class _Item:
    __slots__ = ("rel", "offset", "length", "etag", "parts", "unsubmitted", "state")

    def __init__(self, rel, offset, length, etag):
        self.rel, self.offset, self.length, self.etag = rel, offset, length, etag
        self.parts: deque = deque()     # (start, end, future) submitted, not yet handed to the reader
        self.unsubmitted = 0            # parts still waiting in the prefetcher's todo
        self.state: EntryState | None = None


class Prefetcher:
    """Range GETs in flight ahead of the reader, over the planned items in order (see the module doc)."""

    def __init__(self, source: S3Source, items, own: bool = False):
        self.source = source
        self.own = own
        self.items: deque[_Item] = deque(_Item(*it) for it in items)
        self.todo: deque = deque()      # (item, start, end) not yet submitted
        for item in self.items:
            if item.length <= 0:
                self.todo.append((item, item.offset, item.offset))
            for start in range(item.offset, item.offset + item.length, PART):
                self.todo.append((item, start, min(start + PART, item.offset + item.length)))
        for item, _s, _e in self.todo:
            item.unsubmitted += 1
        self.pool = ThreadPoolExecutor(max_workers=INFLIGHT, thread_name_prefix="s3-read")
        self.lock = threading.Lock()
        self.ahead = 0       # bytes submitted and not yet consumed
        self.submitted = 0   # parts submitted and not yet consumed
        self.closed = False
        self.read_last: dict[bytes, EntryState] = {}  # rel -> the state its last range answered with
        self.spare = source.spare  # PART-sized buffers back from readers, reused (kept by the source)
        self._fill()

    def _fill(self, force: bool = False) -> None:
        """Submit parts while the window allows; `force`: at least one (the reader waits for it)."""
        with self.lock:
            while self.todo and not self.closed and (force or self.submitted < INFLIGHT):
                item, start, end = self.todo[0]
                size = max(end - start, 1)
                if size > SMALL_PART:
                    size = PART  # it takes a whole pooled buffer: the window counts what memory holds
                if not force and self.submitted and self.ahead + size > READ_AHEAD:
                    break
                force = False
                self.todo.popleft()
                item.unsubmitted -= 1
                self.ahead += size
                self.submitted += 1
                if size < PART:
                    buf = bytearray(size)
                else:
                    buf = self.spare.pop() if self.spare else bytearray(PART)
                fut = self.pool.submit(self.source.fetch, item.rel, start, end, item.etag, buf)
                item.parts.append((start, end, fut, buf))

    def first_part(self, item: _Item):
        """The item's next submitted part, submitting up to it if the window had held it back."""
        while not item.parts and item.unsubmitted:
            self._fill(force=True)
        return item.parts[0] if item.parts else None

    def _consumed(self, start: int, end: int) -> None:
        size = max(end - start, 1)
        with self.lock:
            self.ahead -= PART if size > SMALL_PART else size
            self.submitted -= 1
        self._fill()

    def recycle(self, buf: bytearray | None) -> None:
        if buf is not None and len(buf) == PART:
            with self.lock:
                self.spare.append(buf)

    def _head(self, rel: bytes) -> _Item | None:
        """The next planned item if it is rel. Empty items are never opened (the CAR writer has nothing to
        read): once a later item is asked for, they are dropped."""
        while self.items and self.items[0].rel != rel and self.items[0].length <= 0:
            self._drop(self.items.popleft())
        return self.items[0] if self.items and self.items[0].rel == rel else None

    def _drop(self, item: _Item) -> None:
        while item.parts:
            start, end, fut, _buf = item.parts.popleft()
            fut.cancel()  # a fetch already running keeps its buffer: not recycled
            self._consumed(start, end)

    def state_of(self, rel: bytes) -> EntryState | None:
        """The next planned object's state from its first range's response; for the object just read, the
        state its last range answered with (the check after the read); None otherwise (ask the server)."""
        item = self._head(rel)
        if item is None:
            return self.read_last.pop(rel, None)
        if item.state is None:
            part = self.first_part(item)
            if part is None:
                return None
            item.state = part[2].result()[1]
        return item.state

    def open(self, rel: bytes, offset: int, length: int):
        item = self._head(rel)
        if item is None or item.offset != offset or item.length != length:
            return None
        self.items.popleft()
        return _Reader(self, item)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.todo.clear()
        for item in self.items:
            for _s, _e, fut, _buf in item.parts:
                fut.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Reader:
    """readinto_at over one planned item's parts, in order; every part's state must equal the first's."""

    def __init__(self, prefetcher: Prefetcher, item: _Item):
        self.p = prefetcher
        self.item = item
        self.buf: bytearray | None = None  # the part being read ...
        self.data = memoryview(b"")        # ... and its bytes
        self.start = item.offset           # absolute position of data[0]
        self.first: EntryState | None = item.state

    def _next_part(self) -> bool:
        if self.p.first_part(self.item) is None:
            return False
        start, end, fut, buf = self.item.parts.popleft()
        try:
            got, state = fut.result()
        finally:
            self.p._consumed(start, end)
        self._release()
        self.buf = buf
        if self.first is None:
            self.first = state
        elif state != self.first:
            raise SourceChanged(f"source changed while reading: {self.p.source.describe(self.item.rel)}")
        if not self.item.parts and not self.item.unsubmitted:
            self.p.read_last[self.item.rel] = state
        self.data, self.start = memoryview(buf)[:got], start
        return True

    def _release(self) -> None:
        self.data.release()
        self.data = memoryview(b"")
        self.p.recycle(self.buf)
        self.buf = None

    def readinto_at(self, view: memoryview, pos: int) -> int:
        while not (self.start <= pos < self.start + len(self.data)):
            if pos < self.start or not self._next_part():
                return 0
        at = pos - self.start
        n = min(len(view), len(self.data) - at)
        view[:n] = self.data[at:at + n]
        return n

    def close(self) -> None:
        self.p._drop(self.item)  # not read to the end (an error upstream): release the window
        self._release()
        if self.p.own:
            self.p.close()


class S3Walker(ListingPool):
    """Lists the bucket a prefix at a time (Delimiter "/", 1000 keys a page) on several threads, as the local walk
    lists directories: each listing's chunk names its subdirectories before they are queued, so a consumer sees a
    directory announced before any chunk of its own. Chunks go to `out`, then None at the end, or an exception.

    Objects are regular files (with their ETag as a ninth field); a key that cannot be a UnixFS name is a scan
    error, recorded under the nearest valid directory with the key's full path: an empty, "." or ".." name (and
    every key below such a prefix), a name that is both an object and a prefix (the keys below the prefix), a key
    ending in "/" that holds bytes. Zero-byte keys ending in "/" ("directory markers") are directories."""

    def __init__(self, source: S3Source, out, cancel: threading.Event, threads: int = 8):
        self.source = source
        # a job: (directory rel, key prefix, why its keys are errors or None, the directory its errors go to)
        super().__init__(out, cancel, max(1, min(threads, 16)), "s3-list", (b"", source.base, None, b""))

    def list_job(self, job) -> None:
        self._list(*job)

    def pages(self, key_prefix: str):
        src = self.source
        kwargs = dict(Bucket=src.bucket, Prefix=key_prefix, Delimiter="/", MaxKeys=PAGE_KEYS)
        while not self.cancel.is_set():
            page = src.call(src.location, src.client.list_objects_v2, **kwargs)
            yield page
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _queue(self, job: tuple) -> None:
        with self.lock:
            self.pending += 1
        self.todo.put(job)

    def _list(self, rel: bytes, key_prefix: str, bad: str | None, home: bytes) -> None:
        """One prefix. `bad`: why every key below it is an error (recorded in directory `home`)."""
        base = len(self.source.base)
        files: set[bytes] = set()      # object names seen in this listing, to find a prefix of the same name
        prefixes: set[bytes] = set()
        for page in self.pages(key_prefix):
            others: list = []
            subdirs: list = []
            jobs: list = []
            for obj in page.get("Contents") or []:
                key = obj["Key"]
                name = key[len(key_prefix):].encode("utf-8", "surrogateescape")
                path = key[base:].encode("utf-8", "surrogateescape")
                size = int(obj.get("Size", 0))
                mtime, etag = _mtime_ns(obj.get("LastModified")), _etag(obj.get("ETag"))
                why = bad
                if why is None:
                    if not name:
                        if not size:
                            continue  # this prefix's own directory marker
                        why = f"key {key!r} ends in '/' but holds {size} bytes"
                    elif name in (b".", b"..") or b"\x00" in name:
                        why = f"key {key!r} is not a valid UnixFS path (a '.' or '..' name)"
                    elif name in prefixes:
                        why = f"{text(path)} is both an object and a prefix"
                if why is None:
                    files.add(name)
                    others.append((path, name, "file", size, mtime, 0, None, None, etag))
                else:
                    others.append((path, path.rpartition(b"/")[2] or path, "error", size, mtime, 0, None, why, etag))
            for common in page.get("CommonPrefixes") or []:
                sub = common["Prefix"]
                name = sub[len(key_prefix):-1].encode("utf-8", "surrogateescape")
                prefixes.add(name)
                why = bad
                if why is None:
                    if name in (b"", b".", b"..") or b"\x00" in name:
                        why = f"prefix {sub!r} is not a valid UnixFS path (an empty, '.' or '..' name)"
                    elif name in files:
                        why = f"{text(rel + b'/' + name if rel else name)} is both an object and a prefix"
                if why is None:
                    subdirs.append(name)
                    jobs.append((rel + b"/" + name if rel else name, sub, None, b""))
                else:
                    jobs.append((b"", sub, why, rel if bad is None else home))
            self.out.put((rel if bad is None else home, [], 0, 0, others, subdirs, None, True))
            for job in jobs:
                self._queue(job)
