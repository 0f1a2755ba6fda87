"""One typed settings object: every PTOLEMY_* knob parsed in ptolemy_tui/settings.py, a bad value refused in one
line (exit 2 from the CLI), and no other module reading those variables itself."""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

from ptolemy_tui import settings
from ptolemy_tui.settings import Settings, SettingsError, from_environ

PACKAGE = pathlib.Path(settings.__file__).resolve().parent
# Modules that may touch os.environ: the settings themselves, what a parent hands its child (launch, processes,
# worker/main), the tests' fault points, XDG paths, the proxy check of the S3 client, and the TUI command, which
# hands the store and the read rate to the workers it starts.
ENVIRON_ALLOWED = {"settings.py", "worker/launch.py", "services/processes.py", "worker/main.py", "faults.py",
                   "paths.py", "core/source_s3.py", "cli/tui.py"}


def test_defaults_when_nothing_is_set():
    assert from_environ({}) == Settings()
    assert Settings().lease_seconds == 40.0 and Settings().read_rate is None and Settings().notify == "off"


def test_every_variable_is_parsed_into_its_field():
    got = from_environ({"PTOLEMY_DB": "sqlite:///x.db", "PTOLEMY_LEASE_SECONDS": "3", "PTOLEMY_REPORT_SECONDS": "0.3",
                        "PTOLEMY_POLL_SECONDS": "0.2", "PTOLEMY_STAGING_RESERVE": "0", "PTOLEMY_READ_RATE": "16MiB",
                        "PTOLEMY_PG_IDLE_TX_SECONDS": "2", "PTOLEMY_PG_LOCK_SECONDS": "1.5",
                        "PTOLEMY_S3_RETRY_SECONDS": "0.5", "PTOLEMY_COMMP_ENGINE": "Python",
                        "PTOLEMY_SHA256_ENGINE": "c", "PTOLEMY_NOTIFY": "BELL"})
    assert got == Settings(db_url="sqlite:///x.db", lease_seconds=3.0, report_seconds=0.3, poll_seconds=0.2,
                           staging_reserve=0, read_rate=float(16 << 20), pg_idle_tx_seconds=2.0, pg_lock_seconds=1.5,
                           s3_retry_seconds=0.5, commp_engine="python", sha256_engine="c", notify="bell")
    assert from_environ({"PTOLEMY_READ_RATE": "0"}).read_rate is None  # 0: no cap
    assert from_environ({"PTOLEMY_READ_RATE": "1000"}).read_rate == 1000.0
    assert from_environ({"PTOLEMY_LEASE_SECONDS": ""}) == Settings()  # empty counts as unset


@pytest.mark.parametrize("variable, value, says", [
    ("PTOLEMY_LEASE_SECONDS", "soon", "not a duration"),
    ("PTOLEMY_LEASE_SECONDS", "-1", "not a duration"),
    ("PTOLEMY_READ_RATE", "fast", "not a rate"),
    ("PTOLEMY_STAGING_RESERVE", "1GiB", "not a byte count"),
    ("PTOLEMY_NOTIFY", "loud", "not one of off, bell, osc9, osc777"),
])
def test_a_bad_value_is_one_line_naming_the_variable(variable, value, says):
    with pytest.raises(SettingsError) as caught:
        from_environ({variable: value})
    text = str(caught.value)
    assert text.startswith(f"{variable}={value!r}") and says in text and "\n" not in text


def test_current_follows_a_changed_environment_and_caches_otherwise(monkeypatch):
    monkeypatch.setenv("PTOLEMY_POLL_SECONDS", "0.25")
    first = settings.current()
    assert first.poll_seconds == 0.25 and settings.current() is first
    monkeypatch.setenv("PTOLEMY_POLL_SECONDS", "0.5")
    assert settings.current().poll_seconds == 0.5


def test_the_cli_refuses_a_bad_variable_before_doing_anything(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PTOLEMY_READ_RATE": "fast",
           "PTOLEMY_DB": f"sqlite:///{tmp_path / 'p.db'}"}
    r = subprocess.run([sys.executable, "-m", "ptolemy_tui", "project", "list"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["ptolemy: PTOLEMY_READ_RATE='fast' is not a rate: give bytes per second "
                                             "(or a size such as 200MiB), or unset it to read at full speed"]
    assert not (tmp_path / "p.db").exists()  # nothing written


def test_no_other_module_reads_the_environment():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ENVIRON_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, f"read the environment through ptolemy_tui.settings: {offenders}"
