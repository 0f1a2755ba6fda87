"""Project validation, the status machine and the piece a CAR size lands in."""
from __future__ import annotations

import pytest

from ptolemy_tui.core.sizes import GiB, MiB, piece_fit
from ptolemy_tui.errors import UsageError
from ptolemy_tui.services import projects
from ptolemy_tui.store.models import Container
from tests.states import force_status


@pytest.fixture
def spec(tmp_path):
    (tmp_path / "src").mkdir()
    return projects.ProjectSpec("p1", str(tmp_path / "src"), str(tmp_path / "stg"))


def test_defaults(store, spec):
    project, warnings = projects.create(spec)
    assert project.car_size == int(31.5 * GiB) and project.shard_size == GiB and project.profile == "kubo"
    assert project.workers >= 1 and project.staging_budget is None and project.status == "defined"
    assert warnings == []


@pytest.mark.parametrize("car,padded,util_min", [(17 * GiB, 32 * GiB, 0.53), (int(31.5 * GiB), 32 * GiB, 0.99),
                                                 (32512 * MiB, 32 * GiB, 1.0), (32513 * MiB, 64 * GiB, 0.5)])
def test_piece_fit(car, padded, util_min):
    fit = piece_fit(car)
    assert fit.padded_piece == padded
    assert util_min <= fit.utilisation <= 1.0


def test_status_machine_refuses_out_of_order(store, spec):
    project, _ = projects.create(spec)
    projects.require_step(project, "scan")
    with pytest.raises(UsageError, match="cannot build project p1: it is defined; next: ptolemy scan p1"):
        projects.require_step(project, "build")
    with pytest.raises(UsageError, match="cannot containerize"):
        projects.require_step(project, "containerize")
    force_status(project, "scanned")
    projects.require_step(projects.get("p1"), "containerize")
    assert projects.get("p1").status == "scanned"


def test_packing_fields_frozen_once_containers_exist(store, spec):
    project, _ = projects.create(spec)
    Container.create(project=project, seq=1)
    with pytest.raises(UsageError, match="containerize p1 --reset"):
        projects.edit("p1", {"car_size": "16GiB"})
    projects.edit("p1", {"workers": 4, "load_type": "serial"})  # harmless fields still editable
    assert projects.get("p1").workers == 4


def test_the_profile_is_chosen_at_create_time_and_frozen_under_containers(store, spec):
    from dataclasses import replace

    with pytest.raises(projects.FieldError, match=r"--profile 'ipfs' is unknown: use kubo or go-car") as caught:
        projects.create(replace(spec, profile="ipfs"))
    assert caught.value.field == "profile"
    project, _ = projects.create(replace(spec, profile="go-car"))
    assert project.profile == "go-car" and projects.summary(project, with_counts=False)["profile"] == "go-car"
    project, _ = projects.edit("p1", {"profile": "kubo"})
    assert project.profile == "kubo"
    Container.create(project=project, seq=1, predicted_size=100, data_bytes=10)
    with pytest.raises(UsageError, match="profile cannot change under them"):
        projects.edit("p1", {"profile": "go-car"})


def test_field_errors_name_the_field(store, spec):
    spec.car_size = "lots"
    with pytest.raises(projects.FieldError) as info:
        projects.validate(spec)
    assert info.value.field == "car_size"
