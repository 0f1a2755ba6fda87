"""What the benchmark scripts share: sizes as the CLI reads them, and writing a tree of random files."""
from __future__ import annotations

import os


def parse_size(text: str) -> int:
    """`512MiB`, `1GiB`, `1048576B` or bare bytes, as the benchmarks' flags take them."""
    from ptolemy_tui.core.sizes import parse_size as ptolemy_size

    return int(text) if text.isdigit() else ptolemy_size(text)


class TreeWriter:
    """Writes files of random bytes under `root`, counting them: the benchmarks' trees are built with it."""

    def __init__(self, root: str):
        self.root, self.files, self.total = root, 0, 0

    def write(self, rel: str, n: int) -> None:
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            left = n
            while left:
                chunk = min(left, 8 << 20)
                fh.write(os.urandom(chunk))
                left -= chunk
        self.files += 1
        self.total += n


def compile_package() -> None:
    """Write ptolemy_tui's bytecode once, as `pip install .` does. An editable install under
    PYTHONDONTWRITEBYTECODE (set on these machines) would otherwise compile every module again in every process
    the benchmark starts: 60 ms of each CLI call and more of each worker, charged to Ptolemy but not to openssl."""
    import compileall

    compileall.compile_dir(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ptolemy_tui"),
                           quiet=1)
