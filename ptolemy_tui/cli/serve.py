"""`ptolemy serve`: the pieces of the store over HTTP (GET|HEAD /piece/<pieceCID>, byte ranges)."""
from __future__ import annotations

import ipaddress
import logging
import os
import signal
import stat
import sys

from ptolemy_tui.cli.common import add_command, open_store
from ptolemy_tui.errors import UsageError

DEFAULT_LISTEN = "127.0.0.1:7777"


def register(sub) -> None:
    p = add_command(sub, "serve", "serve built pieces over HTTP to storage providers (GET|HEAD /piece/<pieceCID>)",
                    cmd_serve)
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address to listen on (default {DEFAULT_LISTEN}, loopback only; [::1]:PORT for IPv6; "
                        "port 0 picks a free one)")
    p.add_argument("--project", action="append", default=[], metavar="NAME",
                   help="serve only this project's pieces (repeat for several; default: every project)")
    p.add_argument("--token-file", metavar="FILE",
                   help="require `Authorization: Bearer <token>`, the token being this file's content")
    p.add_argument("--base-url", metavar="URL",
                   help="the public URL this server is reached at; recorded so `ptolemy manifest` adds a url column")
    p.add_argument("--source-root", metavar="DIR",
                   help="where this host sees the projects' target trees (inline CARs; default: each target_dir)")
    p.add_argument("--no-verify", action="store_true",
                   help="inline CARs: trust size and mtime instead of re-hashing every leaf read (faster, weaker)")


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UsageError(f"--listen {text!r} is not HOST:PORT: use e.g. 127.0.0.1:7777 or [::1]:7777")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if int(port) > 65535:
        raise UsageError(f"--listen port {port} is out of range: use 0-65535")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            token = f.read(4097).strip()
    except OSError as exc:
        raise UsageError(f"--token-file {path}: {exc.strerror}: give a readable file holding the token") from None
    if not token or len(token) > 4096 or b"\n" in token or any(c < 0x21 or c > 0x7e for c in token):
        raise UsageError(f"--token-file {path} must hold one token of printable ASCII on one line (at most 4096 "
                         "bytes): write one, e.g. `openssl rand -hex 32 > FILE`")
    if st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        logging.getLogger("ptolemy.serve").warning("the token file %s is readable by other users (chmod 600 it)",
                                                   path)
    return token


def check_base_url(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise UsageError(f"--base-url {url!r} is not an http(s) URL: use e.g. https://sp.example.net:7777")
    return url.rstrip("/")


def cmd_serve(args) -> int:
    import asyncio  # here, not at the top: every ptolemy command (a worker too) loads this module

    from ptolemy_tui.services import pieces, results, serve

    host, port = parse_listen(args.listen)
    token = read_token(args.token_file) if args.token_file else None
    base_url = check_base_url(args.base_url) if args.base_url else None
    if args.source_root and not args.source_root.startswith("s3://") and not os.path.isdir(args.source_root):
        raise UsageError(f"--source-root {args.source_root} is not a directory: give the mounted target tree")
    open_store(args)
    ids = pieces.project_ids(args.project)
    if base_url:
        results.set_base_url(base_url)
    if not is_loopback(host) and token is None:
        sys.stderr.write(f"ptolemy: warning: listening on {host} without --token-file: anyone who reaches it "
                         "can download every piece\n")
    access = logging.getLogger("ptolemy.serve")
    access.setLevel(logging.INFO)
    if not any(getattr(h, "_ptolemy_serve", False) for h in access.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        handler._ptolemy_serve = True  # type: ignore[attr-defined]
        access.addHandler(handler)
    config = serve.Config(host=host, port=port, project_ids=ids, token=token, source_root=args.source_root,
                          verify=not args.no_verify)

    def ready(h, p):
        shown = f"[{h}]" if ":" in h else h
        sys.stdout.write(f"serving on http://{shown}:{p}/piece/<pieceCID>\n")
        sys.stdout.flush()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve.run(config, on_ready=ready, stop=stop)

    try:
        asyncio.run(main())
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.listen}: {exc.strerror}: choose another --listen") from None
    return 0
