"""Pieces every subcommand module uses: the one-line-error parser, global options, opening the store."""
from __future__ import annotations

import argparse
import sys
from typing import Callable


def count_1_to_256(text: str) -> int:
    """An argparse type for worker and thread counts."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: give a whole number from 1 to 256") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"{value} is out of range: give a whole number from 1 to 256")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse with a one-line error (the problem and where to look), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """Options valid before and after the subcommand (`ptolemy --db X status` and `ptolemy status --db X`)."""
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("global options")
    group.add_argument("--db", metavar="URL", default=default,
                       help="sqlite:///PATH or postgresql://USER:PASS@HOST:PORT/DB (env PTOLEMY_DB)")
    group.add_argument("--db-ini", metavar="FILE", default=default,
                       help="read [database] host, db_name, db_user, pass from an ini file")
    group.add_argument("--log-level", metavar="LEVEL", default=default, help="DEBUG, INFO, WARNING or ERROR")
    group.add_argument("--log-file", metavar="FILE", default=default, help="where the log goes")
    group.add_argument("--log-ini", metavar="FILE", default=default,
                       help="read [logging] log_level, format, datefmt, logfile from an ini file")


def add_command(sub, name: str, help: str, handler: Callable[[argparse.Namespace], int | None],
                **kwargs) -> argparse.ArgumentParser:
    """A subcommand that also accepts the global options after its name."""
    parser = sub.add_parser(name, help=help, description=help, **kwargs)
    add_global_options(parser, suppress=True)
    parser.set_defaults(handler=handler)
    return parser


def open_store(args: argparse.Namespace, *, operator: bool = True, pooled: bool = False):
    """Connect to the store named by --db / --db-ini / PTOLEMY_DB (default: the SQLite file) and migrate it.
    operator=False for a worker: no lock timeout on its PostgreSQL session (it waits and retries on its own).
    pooled=True for the TUI, whose polling threads borrow connections from a pool instead of opening their own."""
    from ptolemy_tui.services import session

    return session.open_store(getattr(args, "db", None), getattr(args, "db_ini", None), operator=operator,
                            pooled=pooled)


class _Notice:
    """'store unreachable, retrying' on stderr: at once, then at most every 10 s while it lasts."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, detail: str) -> None:
        import time

        from ptolemy_tui.logsetup import mask_secrets

        if time.monotonic() - self.last >= 10:
            self.last = time.monotonic()
            sys.stderr.write(f"ptolemy: store unreachable, retrying ({mask_secrets(detail)})\n")
            sys.stderr.flush()


def patiently(fn: Callable[[], object], what: str):
    """Run one store operation of a command with the workers' patience: a PostgreSQL restart, a lock held by a
    frozen worker or a busy SQLite file is waited out (saying so), not turned into a traceback. The operation is
    re-run from the start, so it must be one transaction or idempotent."""
    from ptolemy_tui.errors import OperationFailed
    from ptolemy_tui.services import processes

    try:
        return processes.retrying(fn, what, notify=_Notice())
    except processes.store_errors() as exc:
        if not processes.is_transient(exc):
            raise  # a schema or SQL error: waiting longer would not help, and "unreachable" would mislead
        from ptolemy_tui.logsetup import mask_secrets

        raise OperationFailed(f"store unreachable while {what} for {processes.patience():.0f}s "
                              f"({mask_secrets(processes.first_line(exc))}); check the database and run the command "
                              "again") from None
