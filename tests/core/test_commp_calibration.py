"""The CommP engine is the one measured fastest here, cached per machine and kernel build; the env var forces."""
from __future__ import annotations

import json
import os

import pytest

from ptolemy_tui.core import commp, commp_calibration

HAVE_C = commp._ckernel is not None
needs_c = pytest.mark.skipif(not HAVE_C, reason="the C kernel is not built")


class FakeKernel:
    """The kernel's surface that calibration uses, with impls we choose (its root is the real one)."""

    def __init__(self, impls):
        self._impls = tuple(impls)
        self.__file__ = commp._ckernel.__file__ if HAVE_C else None

    def impls(self):
        return self._impls

    def root(self, data, k, impl=None):
        return commp._ckernel.root(data, k, impl="portable")


def fixed(figures):
    calls = []

    def measure(kernel):
        calls.append(kernel)
        return dict(figures)

    return measure, calls


@needs_c
def test_the_fastest_measured_path_wins_and_is_cached(tmp_path):
    path = str(tmp_path / "cache" / "commp-engine.json")
    kernel = FakeKernel(("sha-ni-x4", "avx512", "portable"))
    measure, calls = fixed({"c-sha-ni-x4": 985.0, "c-avx512": 822.0, "c-portable": 80.0})
    first = commp_calibration.calibrate(kernel, path, measure)
    assert first.engine == "c-sha-ni-x4" and len(calls) == 1
    assert first.reason.startswith("calibrated ") and "c-sha-ni-x4 985, c-avx512 822, c-portable 80" in first.reason
    assert f"cached in {path}" in first.reason
    again = commp_calibration.calibrate(kernel, path, measure)
    assert again.engine == "c-sha-ni-x4" and again.figures == first.figures and len(calls) == 1  # read, not measured
    doc = json.loads(open(path).read())
    assert list(doc["machines"].values())[0]["figures"]["c-avx512"] == 822.0


@needs_c
def test_another_build_or_cpu_measures_again(tmp_path, monkeypatch):
    path = str(tmp_path / "commp-engine.json")
    kernel = FakeKernel(("avx512", "portable"))
    measure, calls = fixed({"c-avx512": 900.0, "c-portable": 80.0})
    commp_calibration.calibrate(kernel, path, measure)
    monkeypatch.setattr(commp_calibration, "_cpu_identity", lambda: "another CPU")
    measure2, calls2 = fixed({"c-avx512": 500.0, "c-portable": 600.0})
    assert commp_calibration.calibrate(kernel, path, measure2).engine == "c-portable" and len(calls2) == 1
    assert len(json.loads(open(path).read())["machines"]) == 2  # both machines kept (a shared home)


@needs_c
def test_a_broken_or_unwritable_cache_only_costs_a_measurement(tmp_path):
    path = tmp_path / "commp-engine.json"
    path.write_text("{not json")
    kernel = FakeKernel(("sha-ni", "portable"))
    measure, calls = fixed({"c-sha-ni": 700.0, "c-portable": 80.0})
    assert commp_calibration.calibrate(kernel, str(path), measure).engine == "c-sha-ni" and len(calls) == 1
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    choice = commp_calibration.calibrate(kernel, str(blocked / "commp-engine.json"), measure)
    assert choice.engine == "c-sha-ni" and "not cached" in choice.reason


@needs_c
def test_real_measurement_names_every_path_with_a_rate():
    figures = commp_calibration.measure(commp._ckernel, rounds=1)
    assert set(figures) == {f"c-{i}" for i in commp._ckernel.impls()}
    assert all(rate > 0 for rate in figures.values())


@needs_c
def test_auto_uses_the_cache_and_the_env_var_forces(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    impls = commp._ckernel.impls()
    slowest = f"c-{impls[-1]}"
    doc = {"version": 1, "machines": {commp_calibration.machine_key(commp._ckernel): {
        "figures": {f"c-{i}": (10.0 if f"c-{i}" != slowest else 99999.0) for i in impls},
        "measured": "2026-01-01T00:00:00Z"}}}
    os.makedirs(tmp_path / "ptolemy")
    (tmp_path / "ptolemy" / "commp-engine.json").write_text(json.dumps(doc))
    assert commp.engine_name() == slowest  # whatever the flags say: the (planted) measurement decides
    assert commp.CommP().engine == slowest
    assert "calibrated 2026-01-01T00:00:00Z" in commp.engine_reason()
    monkeypatch.setenv("PTOLEMY_COMMP_ENGINE", "c-portable")
    assert commp.engine_name() == "c-portable"
    assert commp.engine_reason() == "forced by PTOLEMY_COMMP_ENGINE=c-portable"
