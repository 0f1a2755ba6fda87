"""`ptolemy tui` (also `ptolemy` with no subcommand) and `ptolemy demo`."""
from __future__ import annotations

import argparse
import sys

from ptolemy_tui.cli.common import add_command, open_store
from ptolemy_tui.settings import current


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
    p.add_argument("--keep", action="store_true", help="keep the temporary sample, its CARs and its store on exit")
    p.add_argument("--rate", default="512KiB", metavar="SIZE",
                   help="cap each demo worker's reads per second, so the build lasts long enough to watch "
                        "(default 512KiB; 0 for no cap)")
    p = add_command(sub, "web", "serve the TUI to a browser (textual-serve); loopback only by default", run_web)
    p.add_argument("--listen", default="127.0.0.1:8000", metavar="HOST:PORT",
                   help="address to listen on (default 127.0.0.1:8000; there is no login: keep it on loopback "
                        "and reach it through `ssh -L 8000:127.0.0.1:8000 HOST`)")
    p.add_argument("project", nargs="?", help="open this project's tabs in every browser session")


def _label(args: argparse.Namespace) -> str:
    from ptolemy_tui.services import session

    return session.describe_url(session.resolve_url(getattr(args, "db", None), getattr(args, "db_ini", None)))


def run_tui(args: argparse.Namespace, *, project: str | None = None, autorun: bool = False) -> int:
    open_store(args, pooled=True)
    from ptolemy_tui.screens.app import PtolemyApp

    app = PtolemyApp(project=project or getattr(args, "project", None), tab=getattr(args, "tab", None) or "overview",
                     autorun=autorun, store_label=_label(args))
    app.run()
    return app.return_code or 0


def run_demo(args: argparse.Namespace) -> int:
    """The demo keeps out of the operator's real store: unless --db/--db-ini name one, it uses a SQLite file
    beside its sample tree; a temporary sample (no --dir) is removed on exit with its CARs and store."""
    import os
    import tempfile

    temporary = not args.dir
    base = args.dir or tempfile.mkdtemp(prefix="ptolemy-demo-")
    own_store = not getattr(args, "db", None) and not getattr(args, "db_ini", None)
    if own_store:
        os.makedirs(base, exist_ok=True)
        args.db = f"sqlite:///{os.path.abspath(base)}/ptolemy-demo.db"
    if args.rate not in ("0", "") and current().read_rate is None:
        os.environ["PTOLEMY_READ_RATE"] = args.rate  # the workers inherit it
    open_store(args)
    from ptolemy_tui.services import demo

    project, base = demo.create_demo(base, files=args.files)
    print(f"demo project {project.name}: sample tree in {base}/data, CARs go to {base}/staging"
          + (f", store {args.db}" if own_store else ""), file=sys.stderr)
    if args.no_tui:
        print(project.name)
        return 0
    args.tab = "overview"
    try:
        code = run_tui(args, project=project.name, autorun=not args.no_run)
    finally:
        if temporary and not args.keep:
            _remove_demo(project.name, base)
    if not temporary or args.keep:
        print(f"demo project {project.name}: files in {base}", file=sys.stderr)
    return code


def _remove_demo(name: str, base: str) -> None:
    """Stop the demo's build (its workers read and write inside `base`), then remove the sample, CARs and store."""
    import shutil

    from ptolemy_tui.services import build, session

    try:
        session.call(build.stop_and_wait, name, 20)
    except Exception as exc:  # noqa: BLE001 - the files go either way; say why the build could not be stopped
        print(f"ptolemy: demo build not stopped cleanly: {exc}", file=sys.stderr)
    session.close()
    shutil.rmtree(base, ignore_errors=True)
    print(f"demo removed: {base}", file=sys.stderr)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_listen(text: str) -> tuple[str, int]:
    """'HOST:PORT', '[::1]:PORT', ':PORT' or 'PORT' -> (host, port); a mistake is one line naming the fix."""
    from ptolemy_tui.errors import UsageError

    value = (text or "").strip()
    host, _, port = value.rpartition(":") if ":" in value else ("", "", value)
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--listen {text!r}: give HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:8000")
    return host, int(port)


def web_command(project: str | None) -> str:
    """The command textual-serve runs for each browser session: this Python, this package, the TUI. The store
    reaches it through PTOLEMY_DB in the environment, never on a command line (ps shows command lines)."""
    import shlex

    args = [sys.executable, "-m", "ptolemy_tui", "tui"]
    if project:
        args.append(project)
    return shlex.join(args)


def run_web(args: argparse.Namespace) -> int:
    import os

    from ptolemy_tui.services import session

    host, port = parse_listen(args.listen)
    open_store(args)  # a wrong --db fails here, in one line, not in every browser session
    if args.project:
        from ptolemy_tui.services import projects

        projects.get(args.project)
    os.environ["PTOLEMY_DB"] = session.resolve_url(getattr(args, "db", None), getattr(args, "db_ini", None))
    session.close()
    from textual_serve.server import Server

    if host not in LOOPBACK:
        print(f"warning: listening on {host}: the web view has no login; anyone who reaches this port controls "
              f"Ptolemy. Prefer 127.0.0.1 and ssh -L.", file=sys.stderr)
    print(f"Ptolemy web view on http://{host if ':' not in host else f'[{host}]'}:{port}/ (Ctrl-C stops)",
          file=sys.stderr)
    Server(web_command(args.project), host=host, port=port, title="Ptolemy").serve()
    return 0
