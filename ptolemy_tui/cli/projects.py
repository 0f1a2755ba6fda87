"""`ptolemy project create|list|show|edit|delete` and `ptolemy status`."""
from __future__ import annotations

import argparse
import sys

from humanize import naturalsize

from ptolemy_tui.cli.common import OneLineParser, add_command, add_global_options, open_store, patiently
from ptolemy_tui.cli.output import print_json, print_table
from ptolemy_tui.core.sizes import format_size
from ptolemy_tui.errors import UsageError


NO_PROJECTS_YET = "no projects yet: ptolemy project create NAME --target DIR --staging DIR"


def _size(n: int | None) -> str:
    return "-" if n is None else f"{format_size(n)} ({naturalsize(n, binary=True)})"


def _field_options(parser: argparse.ArgumentParser, *, creating: bool) -> None:
    parser.add_argument("--target", dest="target_dir", metavar="DIR|s3://BUCKET[/PREFIX]", required=creating,
                        help="the source tree: a directory, or objects in an S3 bucket")
    parser.add_argument("--staging", dest="staging_dir", metavar="DIR", required=creating,
                        help="where CAR files are written (created if missing)")
    parser.add_argument("--car-size", metavar="SIZE", help="target CAR size, e.g. 31.5GiB (bare number = GiB)")
    parser.add_argument("--shard-size", metavar="SIZE", help="files above this are split into shards, e.g. 1GiB")
    parser.add_argument("--load-type", metavar="blitz|serial|inline",
                        help="blitz: all containers in parallel; serial: one at a time; inline: no CAR written, "
                             "`ptolemy serve` regenerates it from the sources")
    parser.add_argument("--encryption", metavar="none", help="only none is implemented")
    parser.add_argument("--workers", metavar="N", help="worker processes for blitz builds (default: CPU count)")
    parser.add_argument("--staging-budget", metavar="SIZE",
                        help="serial builds keep staging use under this (default: the filesystem's free space)")
    parser.add_argument("--s3-endpoint", metavar="URL", help="an S3-compatible store's URL (default: AWS S3)")
    parser.add_argument("--s3-region", metavar="REGION", help="the bucket's region (default: the AWS config's)")
    parser.add_argument("--s3-profile", metavar="NAME", help="a profile of the AWS shared config/credentials files")
    parser.add_argument("--no-sign-request", dest="s3_no_sign", action="store_const", const=True,
                        help="anonymous requests, for public buckets (as the aws CLI)")
    if not creating:
        parser.add_argument("--sign-request", dest="s3_no_sign", action="store_const", const=False,
                            help="sign requests again with the AWS credential chain")
    parser.add_argument("--car-version", metavar="1|2",
                        help="CAR format of the built CARs: 1 (default) or 2 (CARv1 payload + go-car's index)")
    parser.add_argument("--profile", metavar="kubo|go-car",
                        help="DAG layout of the CARs: kubo (default, `ipfs add --cid-version 1 --raw-leaves`) or "
                             "go-car (`car create`)")


def register(sub) -> None:
    project = sub.add_parser("project", help="create, list, show, edit, delete projects",
                             description="Create, list, show, edit and delete projects.")
    add_global_options(project, suppress=True)
    psub = project.add_subparsers(dest="project_command", metavar="ACTION", parser_class=OneLineParser, required=True)

    p = add_command(psub, "create", "define a project", cmd_create)
    p.add_argument("name")
    _field_options(p, creating=True)
    p.add_argument("--json", action="store_true", help="print the project as JSON")

    p = add_command(psub, "list", "list projects", cmd_list)
    p.add_argument("--json", action="store_true")

    p = add_command(psub, "show", "show one project", cmd_show)
    p.add_argument("name")
    p.add_argument("--json", action="store_true")

    p = add_command(psub, "edit", "change a project's fields", cmd_edit)
    p.add_argument("name")
    _field_options(p, creating=False)
    p.add_argument("--json", action="store_true")

    p = add_command(psub, "delete", "delete a project and its records (CAR files stay on disk)", cmd_delete)
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    p = add_command(sub, "status", "where a project (or every project) stands", cmd_status)
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")


def _spec_changes(args) -> dict:
    return {key: getattr(args, key) for key in ("target_dir", "staging_dir", "car_size", "shard_size", "load_type",
                                                "encryption", "workers", "staging_budget", "s3_endpoint",
                                                "s3_region", "s3_profile", "s3_no_sign", "car_version",
                                                "profile")}


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        sys.stderr.write(f"warning: {warning}\n")


def _s3_options(doc: dict) -> str:
    shown = [f"{flag} {doc[key]}" for key, flag in (("s3_endpoint", "--s3-endpoint"), ("s3_region", "--s3-region"),
                                                     ("s3_profile", "--s3-profile")) if doc.get(key)]
    if doc.get("s3_no_sign"):
        shown.append("--no-sign-request")
    return f" ({', '.join(shown)})" if shown else ""


def _print_project(doc: dict) -> None:
    rows = [
        ("name", doc["name"]),
        ("status", doc["status"] + (f" ({doc['message']})" if doc.get("message") else "")),
        ("target", doc["target_dir"] + _s3_options(doc)),
        ("staging", doc["staging_dir"]),
        ("car size", _size(doc["car_size"])),
        ("piece", f"{format_size(doc['padded_piece_size'])} padded, {doc['piece_utilisation']:.1%} used by a full CAR"),
        ("shard size", _size(doc["shard_size"])),
        ("load type", doc["load_type"]),
        ("encryption", doc["encryption"]),
        ("workers", doc["workers"]),
        ("staging budget", _size(doc["staging_budget"]) if doc["staging_budget"] else "free space of the staging disk"),
        ("car version", doc.get("car_version", 1)),
        ("profile", doc.get("profile", "kubo")),
    ]
    if "files" in doc:
        rows += [
            ("files", f"{doc['files']:,} ({naturalsize(doc['bytes'], binary=True)})"),
            ("containers", f"{doc['containers']:,} ({doc['containers_built']:,} built, {doc['containers_failed']:,} failed)"),
            ("cars", f"{doc['cars']:,}" + (f" ({doc['cars_stale']:,} stale: sources changed since the build; "
                                           f"`ptolemy containerize {doc['name']}` packs what changed)"
                                           if doc.get("cars_stale") else "")),
        ]
        if doc.get("dataset_root"):
            rows.append(("dataset root", doc["dataset_root"]))
    if doc.get("next_command"):
        rows.append(("next", f"{doc['next_step']}: {doc['next_command']}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


def cmd_create(args) -> int:
    from ptolemy_tui.services import projects

    open_store(args)
    spec = projects.ProjectSpec(args.name, args.target_dir, args.staging_dir,
                                **{k: v for k, v in _spec_changes(args).items()
                                   if k not in ("target_dir", "staging_dir") and v is not None})
    project, warnings = projects.create(spec)
    _warn(warnings)
    if args.json:
        print_json(projects.summary(project))
    else:
        _print_project(projects.summary(project))
    return 0


def _print_projects(args, docs: list[dict], headers: tuple[str, ...], row) -> int:
    """A listing of every project: `{"projects": [...]}` with --json, else a table (or how to make a first one)."""
    if args.json:
        print_json({"projects": docs})
    elif not docs:
        print(NO_PROJECTS_YET)
    else:
        print_table([row(d) for d in docs], headers)
    return 0


def cmd_list(args) -> int:
    from ptolemy_tui.services import projects

    open_store(args)
    docs = [projects.summary(p) for p in projects.list_projects()]
    return _print_projects(args, docs, ("NAME", "STATUS", "FILES", "BYTES", "BUILT", "CAR SIZE", "LOAD"), lambda d: (
        d["name"], d["status"], f"{d['files']:,}", naturalsize(d["bytes"], binary=True),
        f"{d['containers_built']}/{d['containers']}", format_size(d["car_size"]), d["load_type"]))


def cmd_show(args) -> int:
    from ptolemy_tui.services import projects

    open_store(args)
    doc = projects.summary(projects.get(args.name))
    print_json(doc) if args.json else _print_project(doc)
    return 0


def cmd_edit(args) -> int:
    from ptolemy_tui.services import projects

    open_store(args)
    changes = {k: v for k, v in _spec_changes(args).items() if v is not None}
    if not changes:
        raise UsageError("nothing to change: give at least one of --target, --staging, --car-size, --shard-size, "
                         "--load-type, --encryption, --workers, --staging-budget")
    project, warnings = projects.edit(args.name, changes)
    _warn(warnings)
    doc = projects.summary(project)
    print_json(doc) if args.json else _print_project(doc)
    return 0


def cmd_delete(args) -> int:
    from ptolemy_tui.services import projects

    open_store(args)
    project = projects.get(args.name)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"deleting project {project.name} needs confirmation: add --yes")
        answer = input(f"Delete project {project.name} and all its records (CAR files stay on disk)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted")
            return 1
    projects.delete(project.name)
    print(f"deleted project {project.name}")
    return 0


def cmd_status(args) -> int:
    from ptolemy_tui.services import projects, status

    open_store(args)
    if args.name:
        doc = patiently(lambda: status.project_report(projects.get(args.name)), "reading the status")
        if args.json:
            print_json(doc)
            return 0
        _print_project(doc)
        scan = doc.get("scan")
        if scan:
            print(f"scan        {scan['state']}: {scan['entries']:,} entries, {naturalsize(scan['bytes'], binary=True)}, "
                  f"{scan['symlinks']:,} symlinks, {scan['skipped']:,} skipped, {scan['errors']:,} errors")
        for w in doc["live_workers"]:
            state = "WAITING FOR STAGING SPACE" if w["state"] == "waiting" else w["state"]
            print(f"worker      {w['host']}:{w['pid']} {state} container {w['container_id'] or '-'} "
                  f"{naturalsize(w['bytes_done'], binary=True)}/{naturalsize(w['bytes_total'], binary=True)} "
                  f"staging free {naturalsize(w['staging_free'], binary=True)}"
                  + (f" - {w['message']}" if w.get("message") else ""))
        return 0
    docs = patiently(lambda: [status.project_report(p) for p in projects.list_projects()], "reading the status")
    return _print_projects(args, docs, ("NAME", "STATUS", "BUILT", "WORKERS", "NEXT"), lambda d: (
        d["name"], d["status"], f"{d['containers_built']}/{d['containers']}", len(d["live_workers"]),
        d["next_command"]))
