"""Trees that used to pass the scan or packing and then fail at build time: unreadable files, shard names that
collide with real paths."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from ptolemy_tui.errors import UsageError
from ptolemy_tui.services import containerize, scan
from ptolemy_tui.store.models import Container, Project
from tests.services.pipeline_helpers import new_project, write

MiB = 1 << 20
NOBODY = 65534


def _as_scanning_user() -> list[str]:
    """Root reads everything (CAP_DAC_OVERRIDE), so as root the scan runs as nobody: the user a permission
    check is for."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root and no setpriv to scan as another user")
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def test_a_file_the_scanning_user_cannot_read_is_a_scan_error():
    work = tempfile.mkdtemp(prefix="ptolemy-unreadable-")
    try:
        os.chmod(work, 0o777)
        src = os.path.join(work, "src")
        os.makedirs(os.path.join(src, "d"))
        write(os.path.join(src, "d", "ok.bin"), 100)
        write(os.path.join(src, "d", "secret.bin"), 200)
        os.chmod(os.path.join(src, "d", "secret.bin"), 0o000)
        for d in (src, os.path.join(src, "d")):
            os.chmod(d, 0o755)
        env = dict(os.environ, PTOLEMY_DB=f"sqlite:///{work}/p.db", XDG_DATA_HOME=f"{work}/data",
                   XDG_STATE_HOME=f"{work}/state")
        prefix = _as_scanning_user()

        def ptolemy(*argv):
            return subprocess.run([*prefix, sys.executable, "-m", "ptolemy_tui", *argv], capture_output=True,
                                  text=True, env=env, cwd=work, timeout=120)

        r = ptolemy("project", "create", "p", "--target", src, "--staging", f"{work}/stg")
        assert r.returncode == 0, r.stderr
        r = ptolemy("scan", "p", "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["files"] == 1 and doc["errors"] == 1, doc
        r = ptolemy("status", "p", "--json")
        errors = json.loads(r.stdout)["scan"]["error_paths"]
        assert any("d/secret.bin" in json.dumps(e) and "not readable" in json.dumps(e) for e in errors), errors
        r = ptolemy("containerize", "p", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["files"] == 1  # the unreadable file is not packed into a container
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("clash", ["file", "directory"])
def test_a_real_path_named_like_a_shard_is_refused_at_containerize(store, tmp_path, clash):
    src = tmp_path / "src"
    src.mkdir()
    write(src / "X", 2 * MiB + 10)  # split: X.ptolemy0, X.ptolemy1, X.ptolemy2
    if clash == "file":
        write(src / "X.ptolemy1", 10)
    else:
        (src / "X.ptolemy1").mkdir()
        write(src / "X.ptolemy1" / "inner", 10)
    project = new_project(tmp_path)
    scan.run_scan(project)
    project = Project.get_by_id(project.id)
    before = project.status
    with pytest.raises(UsageError) as info:
        containerize.containerize(project)
    message = str(info.value)
    assert "X.ptolemy1" in message and "split file X " in message and "\n" not in message
    assert Container.select().count() == 0
    assert Project.get_by_id(project.id).status == before  # nothing written


def test_no_collision_packs_as_before(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write(src / "X", 2 * MiB + 10)
    write(src / "X.ptolemy", 10)  # close, but not a shard name
    write(src / "X.ptolemy9", 10)  # a shard name X would only have with 10 shards
    project = new_project(tmp_path)
    scan.run_scan(project)
    report = containerize.containerize(Project.get_by_id(project.id))
    assert report["shards"] == 3 and report["files"] == 3
