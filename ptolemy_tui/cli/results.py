"""`ptolemy cars|manifest|files|verify NAME`: what a build produced, for operators and deal tools."""
from __future__ import annotations

import sys

from humanize import naturalsize

from ptolemy_tui.cli.common import add_command, open_store
from ptolemy_tui.cli.output import print_csv, print_json, print_table
from ptolemy_tui.errors import OperationFailed


def register(sub) -> None:
    p = add_command(sub, "cars", "list the built CARs: payload CID, piece CID (v1, v2), sizes, path", cmd_cars)
    p.add_argument("name")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON document")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")

    p = add_command(sub, "manifest", "one row per CAR with what a deal tool needs", cmd_manifest)
    p.add_argument("name")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default) or json")

    p = add_command(sub, "files", "every file (or shard) → its CID → its CAR", cmd_files)
    p.add_argument("name")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON document")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")

    p = add_command(sub, "verify", "re-read every CAR: block hashes, root CID and piece CID against the record",
                    cmd_verify)
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="one JSON document")


def cmd_cars(args) -> int:
    from ptolemy_tui.services import projects, results

    open_store(args)
    project = projects.get(args.name)
    cars = results.list_cars(project)
    if args.json:
        print_json({"project": project.name, "cars": cars})
    elif args.csv:
        print_csv(cars, results.CAR_KEYS)
    elif not cars:
        print(f"no CARs built yet in {project.name}: `ptolemy build {project.name}`")
    else:
        print_table([(c["container"], c["payload_cid"], c["piece_cid"], naturalsize(c["car_size"], binary=True),
                      naturalsize(c["padded_piece_size"], binary=True), c["path"]) for c in cars],
                    ("CONTAINER", "PAYLOAD CID", "PIECE CID", "CAR SIZE", "PIECE", "PATH"))
    return 0


def cmd_manifest(args) -> int:
    from ptolemy_tui.services import projects, results

    open_store(args)
    sys.stdout.write(results.manifest(projects.get(args.name), args.format))
    return 0


def cmd_files(args) -> int:
    from ptolemy_tui.services import projects, results

    open_store(args)
    project = projects.get(args.name)
    if args.json:
        print_json({"project": project.name, "files": results.list_files(project)})
    elif args.csv:
        print_csv(results.iter_files(project), results.FILE_KEYS)
    else:
        for row in results.iter_files(project):
            sys.stdout.write(f"{row['path']}\t{row['cid']}\t{row['car']}\n")
    return 0


def cmd_verify(args) -> int:
    from ptolemy_tui.services import projects, results

    open_store(args)
    project = projects.get(args.name)
    report = results.verify(project)
    bad = [r for r in report if not r["ok"]]
    if args.json:
        print_json({"project": project.name, "ok": not bad, "cars": report})
    else:
        for r in report:
            status = "ok" if r["ok"] else "BAD: " + "; ".join(r["problems"])
            print(f"container {r['container']}  {r['piece_cid']}  {status}")
        print(f"{len(report) - len(bad)} of {len(report)} CARs verified" if report else
              f"no CARs built yet in {project.name}")
    if bad:
        raise OperationFailed(f"{len(bad)} of {len(report)} CARs of {project.name} failed verification")
    return 0
