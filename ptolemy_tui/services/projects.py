"""Projects: validation of every field, create/edit/delete, the status machine, and the summaries both the CLI
and the TUI show."""
from __future__ import annotations

import os
import re
import shutil
import time
import urllib.parse
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import peewee

from ptolemy_tui.core.source import SourceError
from ptolemy_tui.core.source_s3 import S3Source, SourceUnreachable
from ptolemy_tui.core.sources import is_s3
from ptolemy_tui.core.sizes import MAX_CAR_SIZE, MIN_SHARD_SIZE, SizeError, format_size, parse_size, piece_fit
from ptolemy_tui.errors import UsageError
from ptolemy_tui.services import events
from ptolemy_tui.core.states import ContainerState
from ptolemy_tui.core.unixfs import PUBLIC_PROFILES as CAR_PROFILES
from ptolemy_tui.store import transitions
from ptolemy_tui.store.models import Car, Container, File, Project, database, now
from ptolemy_tui.store.queries import containers_by_state, live_workers

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
LOAD_TYPES = ("blitz", "serial", "inline")
DEFAULT_CAR_SIZE = "31.5GiB"  # 99 % of a 32 GiB piece; the seed's 17 GiB wastes half of one
DEFAULT_SHARD_SIZE = "1GiB"
UTILISATION_WARNING = 0.90

# Which statuses each step may start from, and the next step for each status: see store/transitions.py.
STEP_REQUIRES = transitions.STEP_FROM
NEXT_STEP = transitions.NEXT_STEP


@dataclass
class ProjectSpec:
    """What an operator types for a project, before validation (sizes as text or bytes)."""

    name: str
    target_dir: str
    staging_dir: str
    car_size: str | int = DEFAULT_CAR_SIZE
    shard_size: str | int = DEFAULT_SHARD_SIZE
    load_type: str = "blitz"
    encryption: str = "none"
    workers: int | str | None = None
    staging_budget: str | int | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_profile: str | None = None
    s3_no_sign: bool = False
    car_version: int | str | None = 1
    profile: str | None = "kubo"


@dataclass
class ValidProject:
    name: str
    target_dir: str
    staging_dir: str
    car_size: int
    shard_size: int
    load_type: str
    encryption: str
    workers: int
    staging_budget: int | None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_profile: str | None = None
    s3_no_sign: bool = False
    car_version: int = 1
    profile: str = "kubo"
    warnings: list[str] = field(default_factory=list)


class FieldError(UsageError):
    """A validation error tied to one field, so the project form can show it inline."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


def _size(field_name: str, value: str | int, flag: str) -> int:
    if isinstance(value, int):
        return value
    try:
        return parse_size(value)
    except SizeError as exc:
        raise FieldError(field_name, f"{flag}: {exc}") from None


def _is_inside(child: str, parent: str) -> bool:
    child, parent = os.path.realpath(child), os.path.realpath(parent)
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def validate(spec: ProjectSpec, *, check_name: bool = True) -> ValidProject:
    """Every field checked, nothing written. Raises FieldError naming the field, the problem and the fix."""
    if check_name and not NAME_RE.match(spec.name or ""):
        raise FieldError("name", f"project name {spec.name!r} is invalid: use 1-64 letters, digits, '.', '_' or '-'")
    if check_name and spec.name in (".", ".."):  # the CARs go to <staging>/<name>: never the staging dir or above
        raise FieldError("name", f"project name {spec.name!r} is invalid: it names a directory itself; "
                                 "use letters or digits too")
    if not spec.target_dir:
        raise FieldError("target_dir", "--target is required: the directory tree (or s3://BUCKET[/PREFIX]) to prepare")
    s3 = _validate_s3(spec)
    target = s3.pop("target_dir") if s3 else os.path.abspath(os.path.expanduser(spec.target_dir))
    if not s3 and not os.path.isdir(target):
        raise FieldError("target_dir", f"--target {spec.target_dir}: no such directory; give an existing directory")
    if not s3 and not os.access(target, os.R_OK | os.X_OK):
        raise FieldError("target_dir", f"--target {spec.target_dir}: not readable; fix its permissions or run as its owner")
    if not spec.staging_dir:
        raise FieldError("staging_dir", "--staging is required: the directory where CAR files are written")
    staging = os.path.abspath(os.path.expanduser(spec.staging_dir))
    if os.path.exists(staging) and not os.path.isdir(staging):
        raise FieldError("staging_dir", f"--staging {spec.staging_dir}: exists and is not a directory; pick a directory")
    if not s3 and (_is_inside(staging, target) or _is_inside(target, staging)):
        raise FieldError("staging_dir", "--staging and --target must not contain each other: put staging on its own path")
    probe = staging
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise FieldError("staging_dir", f"--staging {spec.staging_dir}: not writable; fix its permissions or pick another")
    car_size = _size("car_size", spec.car_size, "--car-size")
    shard_size = _size("shard_size", spec.shard_size, "--shard-size")
    if car_size > MAX_CAR_SIZE:
        raise FieldError("car_size", f"--car-size {format_size(car_size)} is too large: at most {format_size(MAX_CAR_SIZE)} fits a 64 GiB piece")
    if shard_size < MIN_SHARD_SIZE:
        raise FieldError("shard_size", f"--shard-size {format_size(shard_size)} is too small: at least 1MiB")
    if shard_size > car_size:
        raise FieldError("shard_size", f"--shard-size {format_size(shard_size)} exceeds --car-size {format_size(car_size)}: make shards at most the CAR size")
    load_type = (spec.load_type or "").lower()
    if load_type not in LOAD_TYPES:
        raise FieldError("load_type", f"--load-type {spec.load_type!r} is unknown: use blitz, serial or inline")
    encryption = (spec.encryption or "none")
    if encryption.lower() != "none":
        raise FieldError("encryption", f"--encryption {encryption!r}: encryption is not implemented yet; use --encryption none")
    workers = spec.workers if spec.workers not in (None, "") else (os.cpu_count() or 1)
    try:
        workers = int(workers)
    except (TypeError, ValueError):
        raise FieldError("workers", f"--workers {spec.workers!r} is not a number: give a whole number from 1 to 256") from None
    if not 1 <= workers <= 256:
        raise FieldError("workers", f"--workers {workers} is out of range: give a whole number from 1 to 256")
    budget = None
    if spec.staging_budget not in (None, "", "none", "None"):
        budget = _size("staging_budget", spec.staging_budget, "--staging-budget")
        if budget < car_size:
            raise FieldError("staging_budget", f"--staging-budget {format_size(budget)} is below --car-size {format_size(car_size)}: a CAR must fit in the budget")
    car_version = 1 if spec.car_version in (None, "") else spec.car_version
    if str(car_version) not in ("1", "2"):
        raise FieldError("car_version", f"--car-version {spec.car_version!r} is unknown: use 1 (CARv1) or 2 (CARv2)")
    profile = spec.profile or "kubo"
    if profile not in CAR_PROFILES:
        raise FieldError("profile", f"--profile {spec.profile!r} is unknown: use {' or '.join(CAR_PROFILES)}")
    fit = piece_fit(car_size)
    warnings = []
    good = max(MIN_SHARD_SIZE, car_size // 8 // (1 << 20) * (1 << 20))
    if shard_size > good:
        # Containers close when the next shard does not fit: with big shards the gap left can be most of a shard.
        warnings.append(f"{format_size(shard_size)} shards in {format_size(car_size)} CARs can leave each container "
                        f"up to a shard short of full; --shard-size {format_size(good)} (at most CAR size / 8) "
                        f"fills them")
    if fit.utilisation < UTILISATION_WARNING:
        warnings.append(
            f"a {format_size(car_size)} CAR fills {fit.utilisation:.0%} of a {format_size(fit.padded_piece)} piece; "
            f"--car-size {format_size(_filling_size(fit.unpadded_piece))} would fill it"
        )
    return ValidProject(spec.name, target, staging, car_size, shard_size, load_type, "none", workers, budget,
                        car_version=int(car_version), profile=profile, warnings=warnings, **(s3 or {}))


def _filling_size(unpadded_piece: int) -> int:
    """The largest CAR size that fits the piece, in whole MiB when that is close (within 1 %), else whole KiB: a
    7 MiB CAR is told 8128KiB, not the 7MiB it already has."""
    mib = unpadded_piece // (1 << 20) * (1 << 20)
    return mib if mib >= unpadded_piece * 0.99 else unpadded_piece // 1024 * 1024


def validate_all(spec: ProjectSpec, *, check_name: bool = True) -> tuple[ValidProject | None, dict[str, str]]:
    """Every field's error at once (the form shows them together): validate, and after each FieldError put a
    known-good stand-in for that field and validate again, so the next field's problem shows too."""
    errors: dict[str, str] = {}
    stand_in = _stand_ins()
    for _ in range(len(stand_in) + 1):
        try:
            valid = validate(spec, check_name=check_name)
            return (valid if not errors else None), errors
        except FieldError as exc:
            if exc.field in errors or exc.field not in stand_in:
                errors.setdefault(exc.field, str(exc))
                return None, errors
            errors[exc.field] = str(exc)
            spec = replace(spec, **{exc.field: stand_in[exc.field]})
    return None, errors


_STAND_INS: dict[str, Any] = {}


def _stand_ins() -> dict[str, Any]:
    """Values that pass validation by themselves: two empty sibling directories made once per process."""
    if not _STAND_INS:
        import tempfile

        base = tempfile.mkdtemp(prefix="ptolemy-form-")
        os.makedirs(os.path.join(base, "target"))
        _STAND_INS.update(name="x", target_dir=os.path.join(base, "target"), staging_dir=os.path.join(base, "staging"),
                          car_size=DEFAULT_CAR_SIZE, shard_size="1MiB", load_type="blitz", encryption="none",
                          workers=1, staging_budget=None)
    return _STAND_INS


S3_FLAGS = {"s3_endpoint": "--s3-endpoint", "s3_region": "--s3-region", "s3_profile": "--s3-profile",
            "s3_no_sign": "--no-sign-request"}


S3_RECHECK = 10.0  # seconds: a bucket listed this recently is not listed again (the form validates as one types)
_S3_LISTED: dict[tuple, float] = {}


def _validate_s3(spec: ProjectSpec) -> dict[str, Any] | None:
    """An s3:// target's fields, checked by listing the bucket (one line per failure: unreachable endpoint,
    missing bucket, denied access); None for a local target, which takes no S3 option."""
    options = {k: (getattr(spec, k) or None) if k != "s3_no_sign" else bool(getattr(spec, k)) for k in S3_FLAGS}
    if not is_s3(spec.target_dir):
        given = [S3_FLAGS[k] for k, v in options.items() if v]
        if given:
            raise FieldError("target_dir", f"{', '.join(given)} only apply to an s3://BUCKET[/PREFIX] target: "
                                           "give one, or leave them out")
        return None
    endpoint = options["s3_endpoint"]
    if endpoint:
        parsed = urllib.parse.urlsplit(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.username or parsed.password:
            raise FieldError("s3_endpoint", f"--s3-endpoint {endpoint!r}: give a URL such as https://s3.example.com "
                                            "(credentials never go in it: use the AWS chain)")
    key = (spec.target_dir, endpoint, options["s3_region"], options["s3_profile"], options["s3_no_sign"])
    try:
        source = S3Source(spec.target_dir, endpoint=endpoint, region=options["s3_region"],
                          profile=options["s3_profile"], unsigned=options["s3_no_sign"])
        if time.monotonic() - _S3_LISTED.get(key, -S3_RECHECK) >= S3_RECHECK:
            source.check()
            _S3_LISTED[key] = time.monotonic()
    except SourceError as exc:
        field_name = "s3_endpoint" if isinstance(exc, SourceUnreachable) else "target_dir"
        raise FieldError(field_name, f"--target {spec.target_dir}: {exc}") from None
    return dict(options, target_dir=source.location)


def get(name: str) -> Project:
    project = Project.get_or_none(Project.name == name)
    if project is None:
        raise UsageError(f"no project named {name!r}: see `ptolemy project list`")
    return project


def list_projects() -> list[Project]:
    return list(Project.select().order_by(Project.name))


def create(spec: ProjectSpec) -> tuple[Project, list[str]]:
    valid = validate(spec)
    if Project.select().where(Project.name == valid.name).exists():
        raise FieldError("name", f"project {valid.name!r} already exists: pick another name or `ptolemy project edit {valid.name}`")
    created_dir = not os.path.exists(valid.staging_dir)
    try:
        os.makedirs(valid.staging_dir, exist_ok=True)
    except OSError as exc:
        raise FieldError("staging_dir", f"cannot create --staging {valid.staging_dir}: {exc.strerror}; create it or pick another") from None
    try:
        with database.atomic():
            project = Project.create(**{f.name: getattr(valid, f.name) for f in fields(ValidProject) if f.name != "warnings"})
            events.record(project, f"project {project.name} created: target {project.target_dir}, staging {project.staging_dir}")
    except peewee.IntegrityError:
        if created_dir:
            shutil.rmtree(valid.staging_dir, ignore_errors=True)
        if Project.select().where(Project.name == valid.name).exists():  # lost a race with another creator
            raise FieldError("name", f"project {valid.name!r} already exists: pick another name") from None
        raise
    return project, valid.warnings


EDITABLE = ("target_dir", "staging_dir", "car_size", "shard_size", "load_type", "encryption", "workers", "staging_budget",
            "s3_endpoint", "s3_region", "s3_profile", "s3_no_sign", "car_version", "profile")


def spec_of(project: Project) -> ProjectSpec:
    return ProjectSpec(project.name, project.target_dir, project.staging_dir, project.car_size, project.shard_size,
                       project.load_type, project.encryption, project.workers, project.staging_budget,
                       project.s3_endpoint, project.s3_region, project.s3_profile, project.s3_no_sign,
                       car_version=project.car_version, profile=project.profile)


def edit(name: str, changes: dict[str, Any]) -> tuple[Project, list[str]]:
    """Apply the given field changes. Packing-relevant changes are refused once containers exist."""
    project = get(name)
    changes = {k: v for k, v in changes.items() if v is not None}
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise UsageError(f"cannot edit {', '.join(sorted(unknown))}: editable fields are {', '.join(EDITABLE)}")
    if "staging_budget" in changes and changes["staging_budget"] in ("none", "None", ""):
        changes["staging_budget"] = None
        clear_budget = True
    else:
        clear_budget = False
    spec = replace(spec_of(project), **changes)
    if clear_budget:
        spec.staging_budget = None
    valid = validate(spec, check_name=False)
    packing = {"target_dir", "car_size", "shard_size", "profile"} & {k for k in changes if getattr(valid, k) != getattr(project, k)}
    if packing and Container.select().where(Container.project == project).exists():
        raise UsageError(
            f"project {name} has containers; {', '.join(sorted(packing))} cannot change under them: "
            f"run `ptolemy containerize {name} --reset` first"
        )
    os.makedirs(valid.staging_dir, exist_ok=True)
    with database.atomic():
        for key in EDITABLE:
            setattr(project, key, getattr(valid, key))
        project.updated_at = now()
        project.save(only=[getattr(Project, key) for key in EDITABLE] + [Project.updated_at])
        if "target_dir" in packing:
            transitions.redefine(project, "target changed: scan again")
            File.delete().where(File.project == project).execute()
        events.record(project, f"project {name} edited: {', '.join(sorted(changes))}")
    return project, valid.warnings


def delete(name: str) -> None:
    """Remove the project and everything recorded about it. CAR files already in staging stay on disk."""
    project = get(name)
    live = live_workers(project)
    if live:
        raise UsageError(f"project {name} has {len(live)} running worker(s): `ptolemy cancel {name}` first")
    with database.atomic():
        project.delete_instance(recursive=True)


def require_step(project: Project, step: str) -> None:
    """Refuse to run a step out of order, saying which step comes first (the step's transition checks again,
    in its UPDATE, so a race cannot slip past this early look)."""
    if project.status not in STEP_REQUIRES[step]:
        raise transitions.refusal(project, step)


def counts(project: Project) -> dict[str, int]:
    files = File.select(peewee.fn.COUNT(File.id), peewee.fn.COALESCE(peewee.fn.SUM(File.size), 0)).where(
        (File.project == project) & (File.kind == "file")).tuples().get()
    by_state = containers_by_state(project)
    return {
        "files": int(files[0]),
        "bytes": int(files[1]),
        "containers": sum(by_state.values()),
        "containers_pending": by_state.get(ContainerState.PENDING, 0),
        "containers_building": by_state.get(ContainerState.BUILDING, 0),
        "containers_built": by_state.get(ContainerState.BUILT, 0),
        "containers_failed": by_state.get(ContainerState.FAILED, 0),
        "cars": Car.select().where(Car.project == project).count(),
        "cars_stale": Car.select().where((Car.project == project) & Car.stale_reason.is_null(False)).count(),
        "dataset_root": dataset_root_cid(project),
    }


def dataset_root_cid(project: Project) -> str | None:
    """The current dataset root CID (`ptolemy dag`), None before the first."""
    from ptolemy_tui.store.models import DatasetRoot

    row = (DatasetRoot.select(DatasetRoot.root_cid).where(DatasetRoot.project == project)
           .order_by(DatasetRoot.id.desc()).first())
    return row.root_cid if row is not None else None


def summary(project: Project, *, with_counts: bool = True) -> dict[str, Any]:
    """The stable JSON shape of a project (documented in the README)."""
    fit = piece_fit(project.car_size)
    step, command = NEXT_STEP.get(project.status, ("", ""))
    doc: dict[str, Any] = {
        "name": project.name,
        "status": project.status,
        "message": project.message,
        "target_dir": project.target_dir,
        "staging_dir": project.staging_dir,
        "car_size": project.car_size,
        "shard_size": project.shard_size,
        "load_type": project.load_type,
        "encryption": project.encryption,
        "workers": project.workers,
        "staging_budget": project.staging_budget,
        "source": "s3" if is_s3(project.target_dir) else "local",
        "s3_endpoint": project.s3_endpoint,
        "s3_region": project.s3_region,
        "s3_profile": project.s3_profile,
        "s3_no_sign": bool(project.s3_no_sign),
        "car_version": project.car_version,
        "profile": project.profile,
        "padded_piece_size": fit.padded_piece,
        "piece_utilisation": round(fit.utilisation, 4),
        "next_step": step,
        "next_command": command.format(name=project.name),
        "created_at": project.created_at,
        "updated_at": project.updated_at,
    }
    if with_counts:
        doc.update(counts(project))
    return doc


def as_dict(valid: ValidProject) -> dict[str, Any]:
    return asdict(valid)
