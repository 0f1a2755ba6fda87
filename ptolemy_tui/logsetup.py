"""Logging from --log-level / --log-file / --log-ini (the seed's logging.ini keys), with secrets masked."""
from __future__ import annotations

import logging
import re

from ptolemy_tui import paths
from ptolemy_tui.errors import UsageError
from ptolemy_tui.inifile import read_ini

DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# The whole user-info of any URL, up to the last "@" of the URL: a password holding an unescaped "@", ":" or "/"
# (S3 secret keys do) is masked whole; an "@" later in a path masks more than needed, never less and password=... in DSNs: a database password never reaches a log line.
_SECRET_PATTERNS = (
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)(?:[^\s@]*@)+"), r"\1***@"),
    (re.compile(r"(password\s*=\s*)\S+", re.I), r"\1***"),
)


def mask_secrets(text: str) -> str:
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


class SecretMaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_secrets(record.getMessage())
        record.args = ()
        return True


def _read_ini(path: str) -> dict[str, str]:
    parser = read_ini(path, "--log-ini")
    section = "logging" if parser.has_section("logging") else (parser.sections() or [None])[0]
    return dict(parser.items(section)) if section else {}


def configure(args) -> None:
    settings: dict[str, str] = {}
    if getattr(args, "log_ini", None):
        settings.update(_read_ini(args.log_ini))
    level = (getattr(args, "log_level", None) or settings.get("log_level") or "INFO").upper()
    if level not in LEVELS:
        raise UsageError(f"unknown log level {level!r}: use one of {', '.join(LEVELS)}")
    log_file = getattr(args, "log_file", None) or settings.get("logfile") or str(paths.default_log_path())
    fmt = settings.get("format") or DEFAULT_FORMAT
    datefmt = settings.get("datefmt") or None
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    try:
        import os

        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the log file {log_file}: {exc.strerror}; pass --log-file PATH") from None
    handler.setFormatter(logging.Formatter(fmt, datefmt))
    handler.addFilter(SecretMaskingFilter())
    root.addHandler(handler)
    root.setLevel(level)
