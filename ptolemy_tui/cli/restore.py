"""`ptolemy restore --to DIR [--root CID] [--verify-against DIR] CAR_OR_DIR…`: the tree back from CARs."""
from __future__ import annotations

from ptolemy_tui.cli.common import add_command
from ptolemy_tui.errors import OperationFailed


def register(sub) -> None:
    p = add_command(sub, "restore", "write the tree under a root CID back from a set of CAR files (v1 or v2)",
                    cmd_restore)
    p.add_argument("inputs", nargs="+", metavar="CAR_OR_DIR", help="CAR files, or directories holding *.car files")
    p.add_argument("--to", required=True, metavar="DIR", help="a new or empty directory to write the tree into")
    p.add_argument("--root", metavar="CID",
                   help="the root to restore (default: the only root, or the dataset DAG CAR's root)")
    p.add_argument("--verify-against", metavar="DIR",
                   help="afterwards compare every restored entry with this source tree, byte for byte")
    p.add_argument("--json", action="store_true", help="one JSON document")


def cmd_restore(args) -> int:
    from ptolemy_tui.cli.output import print_json
    from ptolemy_tui.services import restore

    report = restore.restore(args.inputs, args.to, root=args.root, verify_against=args.verify_against)
    if args.json:
        print_json(report.to_json())
    else:
        print(f"restored {report.root} into {report.to}: {report.files} files, {report.directories} directories, "
              f"{report.symlinks} symlinks, {report.bytes} bytes from {report.cars} CAR(s) ({report.root_from})")
        if args.verify_against is not None:
            for line in report.differences:
                print(line)
            print(f"compared {report.compared} entries with {args.verify_against}: "
                  f"{len(report.differences) or 'no'} difference(s)")
    if report.differences:
        raise OperationFailed(f"{len(report.differences)} difference(s) from {args.verify_against}: "
                              f"{report.differences[0]}")
    return 0
