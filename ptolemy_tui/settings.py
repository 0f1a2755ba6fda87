"""Every knob Ptolemy takes from the environment, parsed and checked in one place.

`current()` reads them into one frozen `Settings`; every module asks it instead of reading `os.environ`. The
parse is done once per distinct environment (the values are cached by the raw strings of these variables), so a
long-lived process pays nothing per call, and a test that changes a variable with monkeypatch sees it. A value
that does not parse is a mistake, said in one line naming the variable and what it takes (exit status 2 from the
CLI), never silently replaced by the default.

Not here, on purpose: the variables a parent hands to the child it spawns (worker id, supervisor token: see
worker/launch.py), the fault points of the tests (faults.py), the XDG base directories (paths.py) and the AWS
credential chain (boto3 reads it). Top level, like errors.py, so every layer may import it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Callable, Mapping

from ptolemy_tui.errors import UsageError


class SettingsError(UsageError):
    """An environment variable holds a value Ptolemy cannot use."""


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise SettingsError(f"{name}={raw!r} is not a duration: give a number of seconds above 0, or unset it")
    return value


def _byte_rate(name: str, raw: str) -> float | None:
    from ptolemy_tui.core.sizes import SizeError, parse_size

    if raw.strip() == "0":
        return None  # type: ignore[return-value]  # 0: no cap, as if unset
    try:
        value = int(raw) if raw.isdigit() else parse_size(raw)
    except SizeError:
        value = 0
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} is not a rate: give bytes per second (or a size such as 200MiB), "
                            "or unset it to read at full speed")
    return float(value)


def _bytes(name: str, raw: str) -> int:
    if not raw.isdigit():
        raise SettingsError(f"{name}={raw!r} is not a byte count: give a whole number of bytes, or unset it")
    return int(raw)


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise SettingsError(f"{name}={raw!r} is not one of {', '.join(allowed)}: pick one, or unset it")
        return value
    return parse


def _text(_name: str, raw: str) -> str:
    return raw


def _engine(_name: str, raw: str) -> str:
    # Which engines exist depends on the machine and the compiled kernel: core/commp.py and core/sha256_batch.py
    # check the name against what runs here, and say so in one line.
    return raw.strip().lower() or "auto"


NOTICE_MODES = ("off", "bell", "osc9", "osc777")


@dataclass(frozen=True)
class Settings:
    """Each field: its variable, its default, what it does (the README's configuration table says the same)."""

    db_url: str | None = None  # PTOLEMY_DB: the store URL (also how a parent hands its store to its children)
    lease_seconds: float = 40.0  # PTOLEMY_LEASE_SECONDS: a claim's lease; a dead worker's container is free after it
    report_seconds: float = 1.0  # PTOLEMY_REPORT_SECONDS: progress report and lease renewal (at most lease / 3)
    poll_seconds: float = 2.0  # PTOLEMY_POLL_SECONDS: idle workers look for work this often
    staging_reserve: int | None = None  # PTOLEMY_STAGING_RESERVE: bytes serial builds keep free (None: 2 %, ≤ 1 GiB)
    read_rate: float | None = None  # PTOLEMY_READ_RATE: cap on each worker's source reads, bytes/s (None: no cap)
    pg_idle_tx_seconds: float = 15.0  # PTOLEMY_PG_IDLE_TX_SECONDS: PostgreSQL ends a session idle in a transaction
    pg_lock_seconds: float = 5.0  # PTOLEMY_PG_LOCK_SECONDS: operator commands wait this long for a row lock
    s3_retry_seconds: float = 120.0  # PTOLEMY_S3_RETRY_SECONDS: a worker retries a failing endpoint this long
    commp_engine: str = "auto"  # PTOLEMY_COMMP_ENGINE: force a CommP engine (auto: calibrated per machine)
    sha256_engine: str = "auto"  # PTOLEMY_SHA256_ENGINE: force the leaf-hashing engine
    notify: str = "off"  # PTOLEMY_NOTIFY: terminal notice when a build ends (off, bell, osc9, osc777)


# field name -> (environment variable, parser)
VARIABLES: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "db_url": ("PTOLEMY_DB", _text),
    "lease_seconds": ("PTOLEMY_LEASE_SECONDS", _seconds),
    "report_seconds": ("PTOLEMY_REPORT_SECONDS", _seconds),
    "poll_seconds": ("PTOLEMY_POLL_SECONDS", _seconds),
    "staging_reserve": ("PTOLEMY_STAGING_RESERVE", _bytes),
    "read_rate": ("PTOLEMY_READ_RATE", _byte_rate),
    "pg_idle_tx_seconds": ("PTOLEMY_PG_IDLE_TX_SECONDS", _seconds),
    "pg_lock_seconds": ("PTOLEMY_PG_LOCK_SECONDS", _seconds),
    "s3_retry_seconds": ("PTOLEMY_S3_RETRY_SECONDS", _seconds),
    "commp_engine": ("PTOLEMY_COMMP_ENGINE", _engine),
    "sha256_engine": ("PTOLEMY_SHA256_ENGINE", _engine),
    "notify": ("PTOLEMY_NOTIFY", _choice(*NOTICE_MODES)),
}
assert set(VARIABLES) == {f.name for f in fields(Settings)}


def from_environ(env: Mapping[str, str]) -> Settings:
    """The settings an environment gives; SettingsError (one line) for the first value that does not parse.
    An empty variable counts as unset."""
    values = {}
    for field_name, (variable, parse) in VARIABLES.items():
        raw = env.get(variable)
        if raw:
            values[field_name] = parse(variable, raw)
    return Settings(**values)


_cache: tuple[tuple[str | None, ...], Settings] | None = None


def current() -> Settings:
    """This process's settings, parsed again only when one of the variables changed."""
    global _cache
    key = tuple(os.environ.get(variable) for variable, _ in VARIABLES.values())
    cached = _cache
    if cached is not None and cached[0] == key:
        return cached[1]
    settings = from_environ(os.environ)
    _cache = (key, settings)
    return settings
