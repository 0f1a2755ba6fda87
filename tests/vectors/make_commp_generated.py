"""Generate tests/vectors/commp_generated.json with the Node oracle (fr32 WASM engine, cross-checked by hashtree)."""
import hashlib, json, os, subprocess, sys, tempfile

ORACLE = sys.argv[1]
OUT = sys.argv[2]
B = 127 << 15
specs = []
for n in [65, 100, 126, 127, 128, 129, 200, 254, 255, 256, 381, 508, 509, 1000, 1016, 1017, 2032, 2033, 4064,
          65536, 127 * 1024 + 1, 1 << 20, (1 << 20) + 1, B - 1, B, B + 1, 2 * B, 3 * B + 5, 10 << 20, 12488705]:
    specs.append({"kind": "shake128", "seed": f"ptolemy-commp-{n}", "size": n})
for n in [65, 4064, B + 1]:
    specs.append({"kind": "zeros", "size": n})
for n in [127 * 3 + 1, 65536]:
    specs.append({"kind": "fill", "byte": 0xFF, "size": n})

def build(s):
    if s["kind"] == "shake128":
        return hashlib.shake_128(s["seed"].encode()).digest(s["size"])
    if s["kind"] == "zeros":
        return bytes(s["size"])
    return bytes([s["byte"]]) * s["size"]

out = []
with tempfile.TemporaryDirectory() as tmp:
    for s in specs:
        path = os.path.join(tmp, "p")
        with open(path, "wb") as f:
            f.write(build(s))
        res = {}
        for eng in ("fr32", "hashtree"):
            r = subprocess.run(["node", os.path.join(ORACLE, "commp.mjs"), path, "--engine", eng],
                               check=True, capture_output=True, text=True)
            res[eng] = json.loads(r.stdout)
        assert res["fr32"] == res["hashtree"], (s, res)
        r = res["fr32"]
        out.append({"data": s, **{k: r[k] for k in ("commp", "piece_cid_v2", "payload_size",
                                                      "unpadded_piece_size", "padded_piece_size")}})
        print(s, r["commp"], file=sys.stderr)
doc = {
    "about": ("CommP vectors computed by ../shared/oracle `node commp.mjs FILE` (engine fr32, the Rust/WASM "
              "package; the hashtree engine agreed on every one). data: shake128 = the first `size` bytes of "
              "SHAKE128(seed as UTF-8); zeros = `size` zero bytes; fill = `size` copies of `byte`. "
              "piece_cid_v2 is given from 65 bytes (CommP's minimum) up, as @web3-storage/data-segment gives it."),
    "generator": "node commp.mjs FILE --engine fr32 (and --engine hashtree), Node v20, oracle package.json pins",
    "vectors": out,
}
with open(OUT, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
