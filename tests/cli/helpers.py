"""Running the real `ptolemy` command in-process (fast) or as a subprocess (what an operator runs)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from ptolemy_tui.cli import main
from ptolemy_tui.store import db


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def run_cli(capsys, *argv: str) -> Result:
    """`ptolemy ARGV...` in this process; the store is closed afterwards like a real exit would."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        db.close_database()
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def run_ptolemy(*argv: str, env: dict | None = None, timeout: float = 120, input: str | None = None) -> Result:
    """`python -m ptolemy_tui ARGV...` as a real subprocess with the test's environment."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "ptolemy_tui", *argv], capture_output=True, text=True,
                          env=full_env, timeout=timeout, input=input)
    return Result(proc.returncode, proc.stdout, proc.stderr)
