"""`ptolemy build|worker|pause|resume|cancel|retry`: start and steer builds; `--wait` follows one in the terminal."""
from __future__ import annotations

import logging
import sys
import time

from humanize import naturalsize

from ptolemy_tui.cli.common import add_command, count_1_to_256, open_store, patiently
from ptolemy_tui.errors import UsageError


def register(sub) -> None:
    p = add_command(sub, "build", "build every pending container into a CAR (detached worker processes)", cmd_build)
    p.add_argument("name")
    p.add_argument("--mode", choices=("blitz", "serial", "inline"), help="blitz: N workers at once; serial: one CAR at a time "
                                                                 "within the staging space (default: the project's load type)")
    p.add_argument("--workers", type=count_1_to_256, metavar="N", help="blitz worker processes (default: the project's)")
    p.add_argument("--wait", action="store_true", help="follow the build here; exit 1 if a container failed")
    p.add_argument("--force", action="store_true", help="start even if the staging disk looks too small")

    p = add_command(sub, "worker", "run one build worker in the foreground (any host that reaches the store)", cmd_worker)
    p.add_argument("--project", metavar="NAME", help="the project to work on (default: any that is building)")
    p.add_argument("--staging", metavar="DIR", help="this host's path of the staging directory")
    p.add_argument("--source-root", metavar="DIR", help="this host's path of the project's target directory")

    p = add_command(sub, "supervise", "keep a build's workers alive (started by `ptolemy build`, detached)",
                    cmd_supervise)
    p.add_argument("name")

    for name, help_text, handler in (
        ("pause", "workers finish their current container, then wait", cmd_pause),
        ("resume", "resume a paused build", cmd_resume),
        ("cancel", "stop a running scan or containerize, else a build (in-flight containers go back to pending)",
         cmd_cancel),
        ("retry", "requeue failed containers", cmd_retry),
    ):
        p = add_command(sub, name, help_text, handler)
        p.add_argument("name")


def _mb(rate: float) -> str:
    return f"{rate / 1e6:.1f} MB/s"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"ETA {h}:{m:02d}:{s:02d}" if h else f"ETA {m}:{s:02d}"


def progress_line(doc: dict) -> str:
    c = doc["containers"]
    pct = 100.0 * doc["bytes_done"] / doc["bytes_total"] if doc["bytes_total"] else 100.0
    parts = [f"{c['built']}/{c['total']} built", f"{c['building']} building", f"{c['failed']} failed",
             f"{naturalsize(doc['bytes_done'], binary=True)}/{naturalsize(doc['bytes_total'], binary=True)} ({pct:.1f}%)",
             _mb(doc["rate"]), _eta(doc["eta_seconds"])]
    if doc["paused"]:
        parts.append("paused")
    for w in doc["waiting"]:
        parts.append(f"{w['host']}:{w['pid']} {w['message']}")
    return ", ".join(parts)


def follow(name: str, *, interval: float = 1.0, out=None) -> int:
    """Print progress until the build ends; 0 if every container is built, 1 otherwise."""
    from ptolemy_tui.services import build
    from ptolemy_tui.services import processes as launch  # log_dir(), children()

    out = out or sys.stdout
    tty = out.isatty()
    last_plain = 0.0
    last_line = ""
    no_workers_since = None
    while True:
        doc = patiently(lambda: build.build_progress(name), "following the build")
        line = progress_line(doc)
        if tty:
            out.write("\r\x1b[K" + line)
            out.flush()
        elif line != last_line and (time.monotonic() - last_plain >= 5 or doc["finished"]):
            out.write(line + "\n")
            out.flush()
            last_plain, last_line = time.monotonic(), line
        if doc["finished"]:
            break
        if not doc["workers"] and not launch.children():
            # Nobody is working on it and none of our workers is starting up: it will not finish by itself.
            no_workers_since = no_workers_since or time.monotonic()
            if time.monotonic() - no_workers_since > 10:
                if tty:
                    out.write("\n")
                sys.stderr.write(f"ptolemy: no worker is building {name} any more; see the logs in "
                                 f"{launch.log_dir()} and run `ptolemy build {name}` again\n")
                return 1
        else:
            no_workers_since = None
        time.sleep(interval)
    if tty:
        out.write("\n")
    for f in doc["failed"]:
        sys.stderr.write(f"container {f['seq']} failed after {f['attempts']} attempt(s): {f['error']}\n")
    out.write(f"{name}: {doc['status']}" + (f" ({doc['message']})" if doc.get("message") else "") + "\n")
    return 0 if doc["status"] == "built" and not doc["failed"] else 1


def cmd_build(args) -> int:
    from ptolemy_tui.services import build
    from ptolemy_tui.services import processes as launch  # log_dir(), children()

    open_store(args)
    if args.workers is not None and build.is_supervised(args.name):
        count = patiently(lambda: build.set_build_workers(args.name, args.workers), "changing the worker count")
        print(f"the build of {args.name} now keeps {count} worker(s) running")
        return follow(args.name) if args.wait else 0
    pids = build.start_build(args.name, mode=args.mode, workers=args.workers, force=args.force)
    if not args.wait:
        print(f"build of {args.name} started: {len(pids)} worker(s), pids {' '.join(map(str, pids))}; "
              f"logs in {launch.log_dir()}")
        print(f"the workers run on their own; follow them with `ptolemy status {args.name}`")
        return 0
    try:
        print(f"build of {args.name} started: {len(pids)} worker(s), pids {' '.join(map(str, pids))}; "
              f"logs in {launch.log_dir()}", flush=True)
        return follow(args.name)
    except KeyboardInterrupt:
        # The workers are detached (their own session): Ctrl-C stops only the following.
        sys.stderr.write(f"\nptolemy: stopped following; the workers keep building {args.name}: "
                         f"`ptolemy status {args.name}` follows it, `ptolemy cancel {args.name}` stops it\n")
        return 130


def _open_store_patiently(args) -> None:
    """A worker (re)started while the store is down waits for it, as a running worker does."""
    from ptolemy_tui.services import processes, session

    StoreUnreachable = session.store_unreachable()
    deadline = time.monotonic() + processes.patience()
    delay = 0.2
    while True:
        try:
            open_store(args, operator=False)
            return
        except StoreUnreachable as exc:
            if time.monotonic() > deadline:
                raise
            logging.getLogger(__name__).warning("%s; retrying in %.1fs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def cmd_supervise(args) -> int:
    from ptolemy_tui.services import processes

    token, ids = processes.supervisor_handoff()
    if not token:
        raise UsageError("`ptolemy supervise` is started by `ptolemy build`; run `ptolemy build NAME` instead")
    _open_store_patiently(args)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    return processes.run_supervisor(args.name, token, ids)


def cmd_worker(args) -> int:
    from ptolemy_tui.services import processes

    processes.skip_postgres_driver(getattr(args, "db", None), getattr(args, "db_ini", None))  # before peewee
    from ptolemy_tui.services import projects

    _open_store_patiently(args)
    handler = logging.StreamHandler(sys.stderr)  # a foreground worker shows what it does
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    if args.project:
        project = projects.get(args.project)
        if project.status != "building":
            raise UsageError(f"project {project.name} is not building (it is {project.status}): "
                             f"start it with `ptolemy build {project.name}`")
    return processes.run_worker(project=args.project, staging=args.staging, source_root=args.source_root)


def cmd_pause(args) -> int:
    from ptolemy_tui.services import build

    open_store(args)
    patiently(lambda: build.pause(args.name), "pausing")
    print(f"{args.name} paused: workers finish their current container, then wait (`ptolemy resume {args.name}`)")
    return 0


def cmd_resume(args) -> int:
    from ptolemy_tui.services import build

    open_store(args)
    patiently(lambda: build.resume(args.name), "resuming")
    print(f"{args.name} resumed")
    return 0


def cmd_cancel(args) -> int:
    from ptolemy_tui.services import build, jobs, projects

    open_store(args)
    kind = patiently(lambda: jobs.cancel(projects.get(args.name)), "cancelling")
    if kind:  # a scan or containerize runs (here, in the TUI's job, or on another host): it stops itself
        print(f"{args.name}: the {kind} was asked to stop; it stops within a few seconds (`ptolemy status "
              f"{args.name}` then says what to run again)")
        return 0
    result = patiently(lambda: build.cancel(args.name), "cancelling")
    # A short wait: cancel answers within seconds whatever a worker does (a frozen one stops when it wakes).
    left = patiently(lambda: build.wait_for_workers(args.name, timeout=5), "waiting for the workers to stop") \
        if result["workers"] else 0
    print(f"{args.name} cancelled: {result['requeued']} in-flight container(s) back to pending"
          + (f"; {left} worker(s) still stopping" if left else ""))
    return 0


def cmd_retry(args) -> int:
    from ptolemy_tui.services import build

    open_store(args)
    n = patiently(lambda: build.retry(args.name), "requeueing failed containers")
    if not n:
        print(f"{args.name}: no failed containers")
        return 0
    from ptolemy_tui.services import projects

    running = build.running_workers(projects.get(args.name))
    print(f"{args.name}: {n} failed container(s) requeued"
          + ("; the running workers take them" if running else f"; start them with `ptolemy build {args.name}`"))
    return 0
