"""Regenerate tests/vectors/unixfs_generated.json with the Node oracle (../shared/oracle). Not run by the tests.

    cp -r ../shared/oracle /tmp/oracle && (cd /tmp/oracle && npm install)
    .venv/bin/python tests/vectors/generate_unixfs_vectors.py /tmp/oracle
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))

from tests.core.unixfs_cases import CASES, SMALL, SMALL_CASES, materialize  # noqa: E402

# (profile, wrap) -> oracle flags. Ptolemy kubo = kubo DAG in go-car's post-order with every file included.
CONFIGS = {
    ("kubo", False): ["--hidden", "--order", "post"],
    ("go-car", False): ["--profile", "gocar", "--no-wrap"],
    ("kubo", True): ["--hidden", "--order", "post", "--wrap"],
    ("go-car", True): ["--profile", "gocar"],
}
WRAPPED = {"hello-dir", "file-262145", "sizes-tree", "symlinks", "file-1"}


def run(oracle: str, path: bytes, flags: list[str], out: str) -> dict:
    proc = subprocess.run(["node", os.path.join(oracle, "car.mjs"), os.fsdecode(path), *flags, "--json",
                           "--out", out], capture_output=True, text=True, check=True)
    doc = json.loads(proc.stdout)
    with open(out, "rb") as f:
        blob = f.read()
    return {"root": doc["root"], "car_size": len(blob), "car_sha256": hashlib.sha256(blob).hexdigest(),
            "blocks": doc["car_blocks"]}


def main() -> None:
    oracle = sys.argv[1] if len(sys.argv) > 1 else "/tmp/oracle"
    vectors = []
    with tempfile.TemporaryDirectory() as tmp:
        for group, cases, knobs in (("default", CASES, None), ("small", SMALL_CASES, SMALL)):
            for name, case in cases.items():
                where = os.path.join(tmp, group + "-" + name)
                os.mkdir(where)
                path = materialize(case, where)
                for (profile, wrap), flags in CONFIGS.items():
                    if wrap and (name not in WRAPPED or knobs):
                        continue
                    extra = ["--chunk-size", str(knobs["chunk_size"]), "--max-links", str(knobs["max_links"])] \
                        if knobs else []
                    res = run(oracle, path, flags + extra, os.path.join(tmp, "out.car"))
                    vectors.append({"case": name, "group": group, "profile": profile, "wrap": wrap, **res})
                    print(group, name, profile, wrap, res["root"], res["car_size"], flush=True)
    doc = {
        "about": "CARs written by the Node oracle (../shared/oracle car.mjs) for the trees in "
                 "tests/core/unixfs_cases.py. kubo = `car.mjs PATH --hidden --order post`, go-car = "
                 "`car.mjs PATH --profile gocar --no-wrap`; wrap=true adds --wrap (kubo) or drops --no-wrap "
                 "(go-car). group 'small' adds --chunk-size 1024 --max-links 3. car_sha256 is of the whole CAR.",
        "vectors": vectors,
    }
    with open(os.path.join(HERE, "unixfs_generated.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
