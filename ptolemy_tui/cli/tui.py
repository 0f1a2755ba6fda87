"""`ptolemy tui` (also `ptolemy` with no subcommand) and `ptolemy demo`."""
from __future__ import annotations

import argparse
import sys

from ptolemy_tui.cli.common import add_command, open_store


def register(sub) -> None:
    p = add_command(sub, "tui", "open the terminal UI (the default with no subcommand)", run_tui)
    p.add_argument("project", nargs="?", help="open this project's tabs directly")
    p.add_argument("--tab", default="overview",
                   choices=("overview", "tree", "containers", "build", "cars", "log"), help="the tab to open")
    p = add_command(sub, "demo", "create a sample tree and project, then watch scan, packing and a build", run_demo)
    p.add_argument("--dir", metavar="DIR", help="where to write the sample (default: a new temporary directory)")
    p.add_argument("--files", type=int, default=300, help="how many small files (default 300)")
    p.add_argument("--no-run", action="store_true", help="only create the project; do not start the steps")
    p.add_argument("--no-tui", action="store_true", help="create the sample and print where it is; no UI")


def _label(args: argparse.Namespace) -> str:
    from ptolemy_tui.store import db

    return db.describe_url(db.resolve_url(getattr(args, "db", None), getattr(args, "db_ini", None)))


def run_tui(args: argparse.Namespace, *, project: str | None = None, autorun: bool = False) -> int:
    open_store(args, pooled=True)
    from ptolemy_tui.screens.app import PtolemyApp

    app = PtolemyApp(project=project or getattr(args, "project", None), tab=getattr(args, "tab", None) or "overview",
                     autorun=autorun, store_label=_label(args))
    app.run()
    return app.return_code or 0


def run_demo(args: argparse.Namespace) -> int:
    open_store(args)
    from ptolemy_tui.services import demo

    project, base = demo.create_demo(args.dir, files=args.files)
    print(f"demo project {project.name}: sample tree in {base}/data, CARs go to {base}/staging", file=sys.stderr)
    if args.no_tui:
        print(project.name)
        return 0
    args.tab = "overview"
    code = run_tui(args, project=project.name, autorun=not args.no_run)
    print(f"demo project {project.name}: files in {base}", file=sys.stderr)
    return code
