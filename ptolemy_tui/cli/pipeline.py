"""`ptolemy scan`, `containerize`, `containers`, `container`: the first two steps and their views."""
from __future__ import annotations

import sys
import time

from ptolemy_tui.cli.common import add_command, count_1_to_256, open_store
from ptolemy_tui.cli.output import print_json, print_table


def register(sub) -> None:
    p = add_command(sub, "scan", "walk the project's target tree and record every entry", cmd_scan)
    p.add_argument("name")
    p.add_argument("--threads", type=count_1_to_256, metavar="N", help="directories listed in parallel (default 8)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = add_command(sub, "containerize", "pack the scanned files into containers of at most the CAR size",
                    cmd_containerize)
    p.add_argument("name")
    p.add_argument("--reset", action="store_true", help="discard the containers and pack again from scratch")
    p.add_argument("--discard-built", action="store_true",
                   help="with --reset: also discard built and building containers (CAR files stay on disk)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = add_command(sub, "containers", "list a project's containers", cmd_containers)
    p.add_argument("name")
    p.add_argument("--json", action="store_true")

    p = add_command(sub, "container", "list one container's items", cmd_container)
    p.add_argument("name")
    p.add_argument("id", type=_container_id)
    p.add_argument("--json", action="store_true")


def _container_id(text: str) -> int:
    """A store row id: a positive 64-bit integer (a bigger one would overflow the database's integer)."""
    import argparse  # noqa: PLC0415

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a container ID: give the ID column of "
                                         "`ptolemy containers NAME`") from None
    if not 1 <= value < 1 << 63:
        raise argparse.ArgumentTypeError(f"{text} is out of range: a container ID is from 1 to 2^63-1 "
                                         "(see `ptolemy containers NAME`)")
    return value


def _human(n: int) -> str:
    from humanize import naturalsize

    return naturalsize(n, binary=True)


class _LiveLine:
    """One self-overwriting progress line on stderr, only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.width = 0

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        text = text[:200]
        sys.stderr.write("\r" + text.ljust(self.width))
        sys.stderr.flush()
        self.width = len(text)

    def close(self) -> None:
        if self.enabled and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()


def cmd_scan(args) -> int:
    from ptolemy_tui.services import projects, scan, status
    from ptolemy_tui.core.display import display_text as path_text

    open_store(args)
    project = projects.get(args.name)
    line = _LiveLine()

    def progress(s) -> None:
        line.show(f"scanning: {s.entries:,} entries, {_human(s.bytes)}, {s.rate:,.0f}/s  {path_text(s.current_dir)}")

    try:
        result = scan.run_scan(project, threads=args.threads, on_progress=progress)
    finally:
        line.close()
    doc = status.scan_report(result)
    if args.json:
        print_json(doc)
    else:
        seconds = (result.finished_at or time.time()) - result.started_at
        print(f"scanned {project.target_dir}: {doc['entries']:,} entries in {seconds:.1f}s ({doc['rate']:,.0f}/s)")
        print(f"  files {doc['files']:,} ({_human(doc['bytes'])}), dirs {doc['directories']:,}, "
              f"symlinks {doc['symlinks']:,}, skipped {doc['skipped']:,}, errors {doc['errors']:,}")
        if doc.get("message"):
            print(f"  {doc['message']}")
        if doc["errors"]:
            print(f"  unreadable entries are listed by `ptolemy status {project.name} --json` (scan_errors)")
    if result.state != "done":
        return 1
    return 0


def cmd_containerize(args) -> int:
    from ptolemy_tui.errors import UsageError
    from ptolemy_tui.services import containerize, projects

    if args.discard_built and not args.reset:
        raise UsageError("--discard-built only goes with --reset")
    open_store(args)
    report = containerize.containerize(projects.get(args.name), reset=args.reset, discard_built=args.discard_built)
    if args.json:
        print_json(report)
        return 0
    sizes = report["bytes_per_container"]
    print(f"containerized {report['project']}: {report['new_containers']:,} new container(s) "
          f"({report['containers']:,} in all) in {report['seconds']:.1f}s")
    print(f"  items {report['items']:,} (files {report['files']:,}, shards {report['shards']:,}, "
          f"symlinks {report['symlinks']:,}), data {_human(report['data_bytes'])}")
    if sizes:
        print(f"  mean fill {report['mean_fill']:.2%} of {_human(report['car_size'])} (all but the last; "
              f"lowest {report['min_fill']:.2%}, last {report['last_fill']:.2%})")
        print(f"  bytes per container: mean {_human(sum(sizes) // len(sizes))}, "
              f"min {_human(min(sizes))}, max {_human(max(sizes))}")
    if report["discarded_containers"]:
        print(f"  discarded {report['discarded_containers']:,} earlier container(s)")
    return 0


def cmd_containers(args) -> int:
    from ptolemy_tui.services import containerize, projects

    open_store(args)
    project = projects.get(args.name)
    rows = containerize.list_containers(project)
    if args.json:
        print_json({"project": project.name, "car_size": project.car_size, "containers": rows})
        return 0
    if not rows:
        print(f"no containers yet: ptolemy containerize {project.name}")
        return 0
    print_table([(r["id"], r["seq"], r["state"], f"{r['predicted_size']:,}", f"{r['fill']:.2%}",
                  f"{r['item_count']:,}", r["shard_count"], r["attempts"], r["error"] or "") for r in rows],
                ("ID", "SEQ", "STATE", "PREDICTED", "FILL", "ITEMS", "SHARDS", "ATTEMPTS", "ERROR"))
    return 0


def cmd_container(args) -> int:
    from ptolemy_tui.services import containerize, projects

    open_store(args)
    project = projects.get(args.name)
    items = containerize.container_items(project, args.id)
    if args.json:
        print_json({"project": project.name, "container_id": args.id, "items": items})
        return 0
    print_table([(i["car_path"], i["source"], i["offset"], i["length"]) for i in items],
                ("CAR_PATH", "SOURCE", "OFFSET", "LENGTH"))
    return 0
