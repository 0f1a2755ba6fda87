"""`ptolemy cars|manifest|files|verify NAME`: what a build produced, for operators and deal tools."""
from __future__ import annotations

import os
import sys

from humanize import naturalsize

from ptolemy_tui.cli.common import add_command, open_store
from ptolemy_tui.cli.output import print_csv, print_json, print_table
from ptolemy_tui.core.display import display_text
from ptolemy_tui.errors import OperationFailed, UsageError


def register(sub) -> None:
    p = add_command(sub, "cars", "list the built CARs: payload CID, piece CID (v1, v2), sizes, path", cmd_cars)
    p.add_argument("name")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON document")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")

    p = add_command(sub, "manifest", "one row per CAR with what a deal tool needs", cmd_manifest)
    p.add_argument("name")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default) or json")
    p.add_argument("--exclude-stale", action="store_true",
                   help="leave out CARs whose sources changed after the build (the stale column says which)")
    p.add_argument("--base-url", metavar="URL", help="add a url column: URL/piece/<pieceCID> (default: the URL "
                                                     "`ptolemy serve --base-url` recorded, if any)")

    p = add_command(sub, "files", "every file (or shard) → its CID → its CAR", cmd_files)
    p.add_argument("name")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON document")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")

    p = add_command(sub, "verify", "re-read every CAR: block hashes, root CID and piece CID against the record",
                    cmd_verify)
    p.add_argument("name")
    p.add_argument("--where", metavar="DIR", help="verify the CARs in DIR (where they were moved to), by file name")
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
        print_table([(c["container"] or "-", c["kind"], c["payload_cid"], c["piece_cid"],
                      naturalsize(c["car_size"], binary=True), naturalsize(c["padded_piece_size"], binary=True),
                      display_text(c["path"]) or "(inline)", "STALE" if c["stale"] else "") for c in cars],
                    ("CONTAINER", "KIND", "PAYLOAD CID", "PIECE CID", "CAR SIZE", "PIECE", "PATH", "STALE"))
        stale = [c for c in cars if c["stale"]]
        if stale:
            sys.stderr.write(f"{len(stale)} CAR(s) stale (a source changed after the build; container "
                             f"{stale[0]['container']}: {stale[0]['stale_reason']}): `ptolemy containerize "
                             f"{project.name}` packs what changed, then `ptolemy build {project.name}`\n")
    return 0


def cmd_manifest(args) -> int:
    from ptolemy_tui.services import projects, results

    base = None
    if args.base_url:
        from ptolemy_tui.cli.serve import check_base_url

        base = check_base_url(args.base_url)
    open_store(args)
    sys.stdout.write(results.manifest(projects.get(args.name), args.format, exclude_stale=args.exclude_stale,
                                      base=base))
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
        for row in results.iter_files(project):  # path is already escaped text: no tab or newline breaks a row
            sys.stdout.write(f"{row['path']}\t{row['cid']}\t{display_text(row['car'])}\n")
    return 0


def cmd_verify(args) -> int:
    from ptolemy_tui.services import projects, results

    open_store(args)
    project = projects.get(args.name)
    if args.where and not os.path.isdir(args.where):
        raise UsageError(f"--where {args.where}: no such directory; give the directory the CARs were moved to")
    report = results.verify(project, where=args.where)
    bad = [r for r in report if r["ok"] is False]
    moved = [r for r in report if r["ok"] is None and r.get("location") == "moved"]
    if args.json:
        print_json({"project": project.name, "ok": not bad, "moved": len(moved), "cars": report})
    else:
        for r in report:
            status = ("ok" if r["ok"] else "moved (not verified)" if r["ok"] is None
                      else "BAD: " + "; ".join(r["problems"]))
            if r["stale"]:
                status += f" (STALE: {r['stale_reason']})"
            where = "DAG CAR" if r["container"] is None else f"container {r['container']}"
            print(f"{where}  {r['piece_cid']}  {status}")
        stale = sum(1 for r in report if r["stale"])
        print((f"{len(report) - len(bad) - len(moved)} of {len(report)} CARs verified" if report else
               f"no CARs built yet in {project.name}")
              + (f"; {len(moved)} moved off staging, not verified (`--where DIR` verifies them there)"
                 if moved else "")
              + (f"; {stale} intact but stale (sources changed since the build)" if stale else ""))
    if bad:
        raise OperationFailed(f"{len(bad)} of {len(report)} CARs of {project.name} failed verification")
    return 0
