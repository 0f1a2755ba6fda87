"""A project built by real workers, restored by the reference tools: `car extract` (go-car) and `ipfs get`
(kubo) give back every file and symlink, the shards `<name>.ptolemyN` joined in order; `stream-commp` gives
every CAR's piece CID and `car verify` passes."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from tests.cli.helpers import run_ptolemy
from tests.peers import peers
from tests.peers.trees import make_tree, tree_digest
from tests.worker.buildkit import FAST

MiB = 1 << 20
SHARD = re.compile(rb"^(.*)\.ptolemy(\d+)$")


def join_shards(root: Path) -> None:
    """Concatenate every `name.ptolemyN` in N order into `name`, as an operator restoring a project does."""
    groups: dict[bytes, list[tuple[int, bytes]]] = {}
    for dirpath, _, filenames in os.walk(os.fsencode(root)):
        for name in filenames:
            m = SHARD.match(name)
            if m:
                groups.setdefault(os.path.join(dirpath, m[1]), []).append((int(m[2]), os.path.join(dirpath, name)))
    for target, parts in groups.items():
        parts.sort()
        assert [n for n, _ in parts] == list(range(len(parts))), f"missing shards of {target!r}"
        with open(target, "wb") as out:
            for _, part in parts:
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out)
                os.unlink(part)


def packed(digest: dict) -> dict:
    """What a project's CARs hold: files and symlinks (empty directories are recorded but not packed)."""
    return {k: v for k, v in digest.items() if v[0] != "dir"}


def test_built_project_restores_with_car_extract_and_ipfs_get(bins, kubo, work):
    src = make_tree(work / "project-src", seed=17, big=False, hamt=False)
    with open(src / "sizes" / "sharded.bin", "wb") as fh:
        fh.write(os.urandom(2 * MiB + 12345))  # three shards of a 1 MiB shard size
    url = f"sqlite:///{work / 'store.db'}"

    def cli(*argv):
        r = run_ptolemy("--db", url, *argv, env=FAST, timeout=240)
        assert r.code == 0, r.err
        return r

    cli("project", "create", "p", "--target", str(src), "--staging", str(work / "staging"),
        "--car-size", "4MiB", "--shard-size", "1MiB", "--workers", "2")
    cli("scan", "p")
    cli("containerize", "p")
    cli("build", "p", "--wait")
    cars = json.loads(cli("cars", "p", "--json").out)["cars"]
    assert len(cars) >= 2
    want = packed(tree_digest(src))

    extracted = work / "restored-car-extract"
    for c in cars:
        assert peers.stream_commp(bins, Path(c["path"]))["commp"] == c["piece_cid"]
        peers.run([bins / "car", "verify", c["path"]])
        peers.run([bins / "car", "extract", "-f", c["path"], extracted])
    join_shards(extracted)
    assert packed(tree_digest(extracted)) == want

    fetched = work / "restored-ipfs-get"
    for c in cars:
        kubo("dag", "import", "--pin-roots=false", c["path"])
        one = work / f"ipfs-get-{c['container']}"
        kubo("get", "-o", one, c["payload_cid"])
        shutil.copytree(one, fetched, symlinks=True, dirs_exist_ok=True)
    join_shards(fetched)
    assert packed(tree_digest(fetched)) == want
