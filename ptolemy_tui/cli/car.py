"""`ptolemy car create|root|ls|verify`: build a CAR from paths, and inspect or check any CAR file."""
from __future__ import annotations

import argparse
import os
import sys

from ptolemy_tui.cli.common import OneLineParser, add_global_options
from ptolemy_tui.core.unixfs import PUBLIC_PROFILES
from ptolemy_tui.errors import OperationFailed, UsageError


def register(sub) -> None:
    car = sub.add_parser("car", help="build, list and verify CAR files",
                         description="Build a CARv1 from files (UnixFS, like kubo / go-car) and inspect CARs.")
    add_global_options(car, suppress=True)
    car.set_defaults(handler=lambda args: _missing(car))
    inner = car.add_subparsers(dest="car_command", metavar="ACTION", parser_class=OneLineParser)

    p = inner.add_parser("create", help="write the CAR of files and directories",
                         description="Write the CARv1 of PATHs (directories recursively, symlinks not followed). "
                                     "Prints the root CID and the piece CID.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("-o", "--output", metavar="OUT.car", help="the CAR file to write")
    p.add_argument("--cid-only", action="store_true",
                   help="compute the root CID without writing a CAR (as `ipfs add --only-hash`)")
    p.add_argument("--profile", choices=PUBLIC_PROFILES, default="kubo",
                   help="kubo: what `ipfs add -r --cid-version=1` builds (default); go-car: `car create`")
    p.add_argument("--wrap", action="store_true", help="wrap the inputs in a directory, as `car create` does")
    p.add_argument("--car-version", type=int, choices=[1, 2], default=1,
                   help="1: CARv1 (default); 2: CARv2, byte-identical to go-car `car create --version 2`")
    p.add_argument("--json", action="store_true", help="one JSON document")
    add_global_options(p, suppress=True)
    p.set_defaults(handler=cmd_create)

    p = inner.add_parser("export", help="write an inline CAR of a project to a file",
                         description="Regenerate an inline CAR (load type inline) from its plan and sources, "
                                     "byte-identical to the CAR a blitz build writes, into FILE.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("container", metavar="CONTAINER", type=int, help="the container's number (see `ptolemy cars`)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the CAR file to write (must not exist)")
    p.add_argument("--json", action="store_true", help="one JSON document")
    add_global_options(p, suppress=True)
    p.set_defaults(handler=cmd_export)

    for name, help_text, handler in (
            ("root", "print the root CID(s) of a CAR", cmd_root),
            ("ls", "list the UnixFS paths and CIDs under the root (every block CID for other DAGs)", cmd_ls),
            ("verify", "check every block's hash, the root and DAG completeness", cmd_verify)):
        p = inner.add_parser(name, help=help_text, description=help_text)
        p.add_argument("file", metavar="FILE")
        if name == "verify":
            p.add_argument("--partial", action="store_true",
                           help="a CAR that links into other CARs by design (the dataset DAG CAR): links to "
                                "blocks outside it are counted, not an error")
        p.add_argument("--json", action="store_true", help="one JSON document")
        add_global_options(p, suppress=True)
        p.set_defaults(handler=handler)


def _missing(parser: argparse.ArgumentParser) -> int:
    raise UsageError("car needs an action: create, export, root, ls or verify (see `ptolemy car --help`)")


# ---------------------------------------------------------------- create

def collect_entries(paths: list[str]):
    from ptolemy_tui.core.car import entries_for_paths

    try:
        return entries_for_paths(paths)
    except FileNotFoundError as exc:
        raise UsageError(f"no such file or directory: {os.fsdecode(exc.filename or '?')}") from None
    except PermissionError as exc:
        raise UsageError(f"cannot read {os.fsdecode(exc.filename or '?')}: permission denied") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _same_file(path, st) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def _commp_sink(car_version: int = 1):
    from ptolemy_tui.core import carv2, commp
    from ptolemy_tui.core.car import CARV1_HEADER_LENGTH

    prefix = carv2.PREFIX_LENGTH if car_version == 2 else CARV1_HEADER_LENGTH
    return commp.CommP(deferred_prefix=prefix, threads=2)


def cmd_create(args: argparse.Namespace) -> int:
    from ptolemy_tui.cli.output import print_json
    from ptolemy_tui.core.car import SourceChanged, write_car

    if args.cid_only and args.output:
        raise UsageError("--cid-only writes no CAR: leave out -o/--output, or drop --cid-only")
    if not args.cid_only and not args.output:
        raise UsageError("car create needs -o OUT.car (or --cid-only for the root CID alone)")
    entries = collect_entries(args.paths)
    if args.cid_only:
        return _create_cid_only(args, entries)
    out_path = args.output
    try:  # an existing output inside an input tree is not part of its own CAR
        out_id = os.stat(out_path)
        entries = [e for e in entries if e.source is None or not _same_file(e.source, out_id)]
    except OSError:
        pass
    sink = _commp_sink(args.car_version)
    try:
        out = open(out_path, "w+b")
    except OSError as exc:
        raise UsageError(f"cannot write {out_path}: {exc.strerror}") from None
    ok = False
    try:
        with out:
            if args.car_version == 2:
                from ptolemy_tui.core.carv2 import write_car_v2

                result = write_car_v2(entries, out, profile=args.profile, wrap=args.wrap, sink=sink)
            else:
                result = write_car(entries, out, profile=args.profile, wrap=args.wrap, sink=sink)
        ok = True
    except SourceChanged as exc:
        raise OperationFailed(str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise OperationFailed(f"{exc.strerror or exc}: {exc.filename or out_path}") from None
    finally:
        if not ok:  # no half-written CAR left behind that could pass for a finished one
            try:
                os.unlink(out_path)
            except OSError:
                pass
    piece = sink.digest()  # every CAR is over CommP's 65-byte minimum (header and one block at least)
    doc = {
        "root_cid": str(result.root_cid),
        "car_size": result.car_size,
        "block_count": result.block_count,
        "piece_cid": piece.piece_cid_v1,
        "piece_cid_v2": piece.piece_cid_v2,
        "padded_piece_size": piece.padded_piece_size,
        "output": out_path,
        "profile": args.profile,
        "car_version": args.car_version,
    }
    if args.json:
        print_json(doc)
    else:
        print(f"root {doc['root_cid']}")
        print(f"piece_cid {piece.piece_cid_v1}")
        sys.stderr.write(f"wrote {out_path}: {result.car_size} bytes, {result.block_count} blocks\n")
    return 0


def _create_cid_only(args: argparse.Namespace, entries) -> int:
    from ptolemy_tui.cli.output import print_json
    from ptolemy_tui.core.car import DiscardOutput, SourceChanged, write_car

    try:
        result = write_car(entries, DiscardOutput(), profile=args.profile, wrap=args.wrap)
    except SourceChanged as exc:
        raise OperationFailed(str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise OperationFailed(f"{exc.strerror or exc}: {exc.filename or '?'}") from None
    doc = {"root_cid": str(result.root_cid), "car_size": result.car_size, "block_count": result.block_count,
           "piece_cid": None, "piece_cid_v2": None, "padded_piece_size": None, "output": None,
           "profile": args.profile}
    if args.json:
        print_json(doc)
    else:
        print(f"root {doc['root_cid']}")
    return 0


# ---------------------------------------------------------------- root, ls, verify

def _open_error(exc) -> OperationFailed:
    return OperationFailed(f"bad CAR: {exc}")


def _check_file(path: str) -> None:
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path} is a directory, not a CAR file")
    if not stat.S_ISREG(mode):  # a FIFO would block the read for ever, a device would read for ever
        raise UsageError(f"{path} is not a regular file (a FIFO, socket or device); give a CAR file")


def cmd_root(args: argparse.Namespace) -> int:
    from ptolemy_tui.cli.output import print_json
    from ptolemy_tui.core.carread import CarFile, CarFormatError

    _check_file(args.file)
    try:
        with CarFile(args.file) as car:
            roots, version = car.roots, car.header.version
    except CarFormatError as exc:
        raise _open_error(exc) from None
    if args.json:
        print_json({"roots": [str(r) for r in roots], "version": version})
    else:
        for r in roots:
            print(r)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    """Streams: each entry is printed as the walk reaches it, so a huge or hostile CAR starts printing at once
    and never holds its listing in memory."""
    import json

    from ptolemy_tui.core.carread import CarFormatError, display_path, iter_ls
    from ptolemy_tui.core.display import json_name_fields

    _check_file(args.file)
    problems: list[str] = []
    out = sys.stdout
    first = True
    try:
        if args.json:
            out.write('{\n  "entries": [')
        for e in iter_ls(args.file, problems):
            if args.json:
                # escaped text, plus the exact bytes (path_hex) whenever the name is not plain printable UTF-8
                row = {**json_name_fields(e.path, "path"), "cid": str(e.cid), "kind": e.kind}
                out.write(("\n    " if first else ",\n    ") + json.dumps(row))
                first = False
            else:
                out.write(f"{e.cid}\t{display_path(e.path)}\n" if e.path else f"{e.cid}\n")
    except CarFormatError as exc:
        if args.json:
            out.write("\n  ],\n  \"problems\": " + json.dumps(problems + [str(exc)]) + "\n}\n")
        raise _open_error(exc) from None
    if args.json:
        out.write(("\n  " if not first else "") + "],\n  \"problems\": " + json.dumps(problems, indent=4)
                  .replace("\n", "\n  ") + "\n}\n")
    if problems:
        raise OperationFailed(f"incomplete or unlistable DAG: {problems[0]}"
                              + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ptolemy_tui.cli.output import print_json
    from ptolemy_tui.core.carread import CarFormatError, verify

    _check_file(args.file)
    try:
        report = verify(args.file, partial=args.partial)
    except CarFormatError as exc:
        if args.json:
            print_json({"ok": False, "error": str(exc), "offset": exc.offset})
        raise OperationFailed(f"verify failed: {exc}") from None
    note = ""
    if report.unknown_codecs:
        note = " (links of codec(s) " + ", ".join(f"0x{c:x}" for c in sorted(report.unknown_codecs)) + \
               " not followed: hashes and root checked only)"
    if args.json:
        print_json({"ok": True, "version": report.version, "roots": [str(r) for r in report.roots],
                    "blocks": report.blocks, "reachable_blocks": report.reachable,
                    "duplicate_blocks": report.duplicates,
                    "unfollowed_codecs": sorted(report.unknown_codecs), "external_links": report.external})
    elif args.partial:
        print(f"ok: CARv{report.version}, {report.blocks} blocks, every hash valid, root present, "
              f"{report.reachable} blocks reachable here, {report.external} link(s) to blocks in other CARs{note}")
    else:
        print(f"ok: CARv{report.version}, {report.blocks} blocks, every hash valid, root present, "
              f"DAG complete ({report.reachable} blocks reachable){note}")
    return 0


# ---------------------------------------------------------------- export

def cmd_export(args: argparse.Namespace) -> int:
    from ptolemy_tui.cli.common import open_store
    from ptolemy_tui.cli.output import print_json
    from ptolemy_tui.services import pieces

    open_store(args)
    doc = pieces.export_car(args.name, args.container, args.output)
    if args.json:
        print_json(doc)
    else:
        print(f"{doc['output']}: {doc['car_size']:,} bytes, payload {doc['payload_cid']}, piece {doc['piece_cid']}")
    return 0
