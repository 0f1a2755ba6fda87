"""`ptolemy dag NAME`: the dataset root DAG and its DAG CAR; `--list` shows every root recorded."""
from __future__ import annotations

from ptolemy_tui.cli.common import add_command, open_store


def register(sub) -> None:
    p = add_command(sub, "dag", "write the dataset root DAG (one CID for the whole tree) into the DAG CAR",
                    cmd_dag)
    p.add_argument("name")
    p.add_argument("--list", action="store_true", help="list every dataset root recorded, newest first")
    p.add_argument("--json", action="store_true", help="one JSON document")


def cmd_dag(args) -> int:
    from ptolemy_tui.cli.output import print_json, print_table
    from ptolemy_tui.services import dag, projects

    open_store(args)
    project = projects.get(args.name)
    if args.list:
        roots = dag.list_roots(project)
        if args.json:
            print_json({"project": project.name, "roots": roots})
        elif not roots:
            print(f"no dataset root yet in {project.name}: `ptolemy dag {project.name}`")
        else:
            print_table([(r["root_cid"], r["piece_cid"], r["car_size"], r["files"], r["path"]) for r in roots],
                        ("ROOT CID", "DAG CAR PIECE CID", "CAR SIZE", "FILES", "PATH"))
        return 0
    doc = dag.build_dag(project)
    if args.json:
        print_json(doc)
    else:
        print(f"root {doc['root_cid']}")
        print(f"piece_cid {doc['piece_cid']}")
        print(f"wrote {doc['path']}: CARv{doc['car_version']}, {doc['car_size']} bytes, {doc['blocks']} blocks, "
              f"{doc['files']} entries, {doc['sharded_files']} sharded file(s) made whole"
              + (" (unchanged)" if doc["unchanged"] else ""))
    return 0
