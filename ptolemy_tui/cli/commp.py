"""`ptolemy commp [FILE|-]`: the piece commitment of a file or of stdin, printed as stream-commp prints it.

    ptolemy commp big.car                 CommPCid / Payload / Unpadded piece / Padded piece lines
    ptolemy commp big.car --json          {"commp", "piece_cid_v2", "payload_size", "unpadded_piece_size", ...}
    cat big.car | ptolemy commp -         stdin (also when FILE is omitted and stdin is not a terminal)
    ptolemy commp --engine                which engine runs here (c-avx512, c-sha-ni-x4, c-sha-ni, c-portable or
                                          python) and why: the calibrated MB per CPU-second, or what forced it
    ptolemy commp big.car --engine python --threads 2 --padded-size 32GiB
"""
from __future__ import annotations

import argparse
import os
import sys

from ptolemy_tui.cli.common import add_command
from ptolemy_tui.errors import OperationFailed, UsageError

SHOW_ENGINE = "\0show"
ENGINES = ("auto", "c", "c-avx512", "c-sha-ni-x4", "c-sha-ni", "c-portable", "python")


def register(sub) -> None:
    parser = add_command(
        sub, "commp", help="piece commitment (CommP) of a file or stdin, printed like stream-commp", handler=run,
        epilog="Without --engine NAME the fastest engine built here runs (env PTOLEMY_COMMP_ENGINE overrides). "
               "`ptolemy commp --engine` alone prints which one that is.")
    parser.add_argument("file", nargs="?", metavar="FILE|-", help="the payload (a CAR); - or nothing reads stdin")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the four lines")
    parser.add_argument("--engine", nargs="?", const=SHOW_ENGINE, default="auto", metavar="NAME",
                        help=f"{'|'.join(ENGINES)}; without NAME: print the engine that runs and exit")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="hashing threads for this one stream (default: 2 where there are 2 cores, else 1)")
    parser.add_argument("--padded-size", metavar="SIZE", default=None,
                        help="pad the piece up to at least this padded size (a power of two, e.g. 32GiB)")


def _show_engine(args: argparse.Namespace) -> int:
    from ptolemy_tui.core import commp

    name, reason = commp.engine_name(), commp.engine_reason()
    if args.json:
        from ptolemy_tui.cli.output import print_json

        print_json({"engine": name, "reason": reason, "available": commp.available_engines(),
                    "calibrated": commp.calibrated_figures()})
    else:
        print(name)
        print(f"why: {reason}")
    return 0


def run(args: argparse.Namespace) -> int:
    from ptolemy_tui.core import commp
    from ptolemy_tui.core.sizes import SizeError, parse_size

    if args.engine == SHOW_ENGINE and args.file is None:
        return _show_engine(args)
    engine = "auto" if args.engine == SHOW_ENGINE else args.engine
    if engine not in ENGINES:
        hint = " (to name the file, put it before --engine or write --engine=NAME)" if os.path.exists(engine) else ""
        raise UsageError(f"unknown CommP engine {engine!r}: use one of {', '.join(ENGINES)}{hint}")
    threads = args.threads if args.threads is not None else min(2, os.cpu_count() or 1)
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, not {threads}")
    min_padded = 0
    if args.padded_size is not None:
        try:
            min_padded = parse_size(args.padded_size)
        except SizeError as exc:
            raise UsageError(f"--padded-size: {exc}") from None
    try:
        if args.file in (None, "-"):
            if args.file is None and sys.stdin.isatty():
                raise UsageError("give a FILE, or - to read stdin")
            result = commp.commp_of_stream(sys.stdin.buffer, threads=threads, engine=engine,
                                           min_padded_piece=min_padded)
        else:
            if os.path.isdir(args.file):
                raise UsageError(f"{args.file} is a directory: CommP is computed over one file (a CAR)")
            if not os.path.exists(args.file):
                raise UsageError(f"{args.file}: no such file")
            try:
                result = commp.commp_of_file(args.file, threads=threads, engine=engine,
                                             min_padded_piece=min_padded)
            except PermissionError as exc:
                raise UsageError(f"{args.file}: permission denied") from exc
    except commp.CommPError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise OperationFailed(f"reading {args.file or 'stdin'} failed: {exc.strerror or exc}") from None
    if min_padded and result.padded_piece_size > min_padded:
        # the payload's own piece is bigger: the option would be silently ignored
        from ptolemy_tui.core.sizes import format_size

        raise UsageError(f"--padded-size {args.padded_size} is smaller than the payload's own piece "
                         f"({format_size(result.padded_piece_size)}): give at least that, or leave it out")
    if args.engine == SHOW_ENGINE:
        sys.stderr.write(f"engine: {commp.engine_name(engine)} ({commp.engine_reason(engine)})\n")
    if args.json:
        from ptolemy_tui.cli.output import print_json

        print_json(result.to_json())
    else:
        sys.stdout.write("\n".join(result.stream_commp_lines()) + "\n")
    return 0
