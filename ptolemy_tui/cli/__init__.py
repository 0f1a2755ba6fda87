"""The `ptolemy` command: global options, subcommand registry, one-line errors and exit codes.

Each subcommand module exposes ``register(subparsers)``; it only declares arguments and imports its heavy
dependencies (peewee, textual, the C kernel) inside its handler, so `ptolemy --version` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ptolemy_tui import __version__
from ptolemy_tui.cli.common import OneLineParser, add_global_options
from ptolemy_tui.errors import PtolemyError

# Modules under ptolemy_tui.cli that add subcommands, in the order their help is listed.
COMMAND_MODULES = ("projects", "pipeline", "build", "results", "dag", "restore", "car", "commp", "serve", "tui")

# The module that adds each subcommand (tests/cli/test_cli_parser.py checks it against what the modules
# register): `ptolemy COMMAND …` imports only that one, since registering them all costs 60 ms of start-up, a
# fifth of the CPU of `ptolemy commp` on a small file and paid again by every job and CLI call.
COMMANDS = {"project": "projects", "status": "projects",
            "scan": "pipeline", "containerize": "pipeline", "containers": "pipeline", "container": "pipeline",
            **dict.fromkeys(("build", "worker", "supervise", "pause", "resume", "cancel", "retry"), "build"),
            **dict.fromkeys(("cars", "manifest", "files", "verify"), "results"),
            "dag": "dag", "restore": "restore", "car": "car", "commp": "commp", "serve": "serve",
            "tui": "tui", "demo": "tui", "web": "tui"}
VALUE_OPTIONS = ("--db", "--db-ini", "--log-level", "--log-file", "--log-ini")  # the global options: one value each


def command_module(argv: list[str]) -> str | None:
    """The module of the subcommand argv names when that is certain without parsing; None when it is not (no
    command, help, an abbreviated option, a mistake): then every module registers and argparse says the rest."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in COMMANDS:
            return COMMANDS[arg]
        if arg in VALUE_OPTIONS:
            i += 2
            continue
        if not (arg.startswith("--") and arg.partition("=")[0] in VALUE_OPTIONS and "=" in arg):
            return None
        i += 1
    return None


def engine_summary() -> str:
    from ptolemy_tui.core import commp  # always there: without the C kernel it runs pure Python

    name = commp.engine_name()
    return f"commp engine: {name}; {commp.engine_reason()}" if not name.startswith("unavailable") else \
        f"commp engine: {name}"


class VersionAction(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"ptolemy {__version__} ({engine_summary()})")
        parser.exit(0)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser, or, given the arguments, one with only the subcommands of the module they name."""
    parser = OneLineParser(prog="ptolemy", description="Prepare large datasets for Filecoin.")
    parser.add_argument("--version", action=VersionAction, help="print the version and the CommP engine")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    wanted = command_module(argv) if argv is not None else None
    for name in (wanted,) if wanted else COMMAND_MODULES:
        try:
            module = importlib.import_module(f"ptolemy_tui.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ptolemy_tui.cli.{name}":
                continue  # a capability not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        from ptolemy_tui import logsetup, settings

        settings.current()  # a bad PTOLEMY_* value stops here, in one line, before any worker inherits it
        logsetup.configure(args)
        if args.command is None:
            from ptolemy_tui.cli import tui

            return tui.run_tui(args)
        return int(args.handler(args) or 0)
    except PtolemyError as exc:
        sys.stderr.write(f"ptolemy: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("ptolemy: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if not _is_store_outage(exc):
            raise
        from ptolemy_tui.logsetup import mask_secrets

        text = str(exc).strip()
        sys.stderr.write(f"ptolemy: store unreachable: {mask_secrets(text.splitlines()[0] if text else type(exc).__name__)}; "
                         "check the database (--db) and run the command again\n")
        return 1


def _is_store_outage(exc: BaseException) -> bool:
    """The store went away under a command that has no patience of its own: one line, not a traceback."""
    from ptolemy_tui.services import session

    return session.is_store_outage(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
