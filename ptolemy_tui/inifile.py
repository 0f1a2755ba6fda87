"""Reading the predecessor's ini files (database.ini, logging.ini) with one-line errors."""
from __future__ import annotations

import configparser

from ptolemy_tui.errors import UsageError


def read_ini(path: str, flag: str) -> configparser.ConfigParser:
    """Parse `path` (given with `flag`, e.g. --db-ini); an unreadable or malformed file is a UsageError."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except OSError as exc:
        raise UsageError(f"cannot read {flag} {path}: {exc.strerror}; give a readable ini file") from None
    except configparser.Error as exc:
        raise UsageError(f"{flag} {path} is not a valid ini file ({exc.__class__.__name__}); fix its syntax") from None
    return parser
