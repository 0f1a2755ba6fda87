"""The state machine: every state write goes through store/transitions.py, each transition's precondition is
in its UPDATE's WHERE (a stale in-memory row cannot get past it), and the store only ever holds enum values."""
from __future__ import annotations

import ast
import pathlib

import pytest

from ptolemy_tui.core.states import ContainerState, ProjectStatus, ScanState, WorkerState
from ptolemy_tui.store import transitions
from ptolemy_tui.store.models import Car, Container, Project, Scan, Worker
from ptolemy_tui.store.transitions import Holder, TransitionRefused
from tests.states import force_status, unknown_states

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "ptolemy_tui"
P, C = ProjectStatus, ContainerState


def _project(status: ProjectStatus = P.DEFINED, containers: int = 0) -> Project:
    project = Project.create(name="p", target_dir="/src", staging_dir="/stg", car_size=1 << 30, shard_size=1 << 20,
                             workers=2, status=status)
    for seq in range(1, containers + 1):
        Container.create(project=project, seq=seq, predicted_size=1000, data_bytes=900)
    return project


def _status(project: Project) -> str:
    return Project.get_by_id(project.id).status


def _stale(project: Project, in_store: ProjectStatus) -> Project:
    """The caller's row still says what it said; the store has moved on (another process's transition)."""
    force_status(Project.get_by_id(project.id), in_store)
    return project


def _start(project: Project, token: str = "t1") -> None:
    if not transitions.start_build(project, "blitz", supervisor_token=token, workers=1, stale_after=30):
        raise transitions.refusal(project, "build")
    Project.update(supervisor=None).where(Project.id == project.id).execute()  # the next start may win too


# Each project transition: (call, the statuses it may start from, where it goes).
PROJECT_MOVES = {
    "begin_scan": (lambda p: transitions.begin_scan(p, "h:1"), transitions.STEP_FROM["scan"], P.SCANNING),
    "begin_containerize": (lambda p: transitions.begin_containerize(p, "h:1"), transitions.STEP_FROM["containerize"],
                           P.CONTAINERIZING),
    "begin_containerize reset": (lambda p: transitions.begin_containerize(p, "h:1", reset=True),
                                 transitions.RESET_FROM, P.CONTAINERIZING),
    "start_build": (lambda p: _start(p), transitions.STEP_FROM["build"], P.BUILDING),
    "cancel_build": (lambda p: transitions.cancel_build(p), (P.BUILDING,), P.CONTAINERIZED),
}


@pytest.mark.parametrize("name", sorted(PROJECT_MOVES))
def test_project_transitions_check_their_precondition_in_the_update(store, name):
    call, allowed, target = PROJECT_MOVES[name]
    project = _project()
    for status in ProjectStatus:
        # The in-memory row claims an allowed status; only the store's decides.
        project.status = allowed[0]
        _stale(project, status)
        if status in allowed:
            call(project)
            assert _status(project) == target == project.status, (name, status)
        else:
            with pytest.raises(TransitionRefused, match=f"it is {status}"):
                call(project)
            assert _status(project) == status, (name, status)


def test_one_build_per_project_by_its_supervisor(store):
    project = _project(P.CONTAINERIZED)
    assert transitions.start_build(project, "blitz", supervisor_token="a", workers=2, stale_after=30)
    rival = Project.get_by_id(project.id)
    assert not transitions.start_build(rival, "serial", supervisor_token="b", workers=1, stale_after=30)
    row = Project.get_by_id(project.id)
    assert (row.supervisor, row.load_type, row.build_workers) == ("a", "blitz", 2)
    Project.update(supervised_at=row.supervised_at - 60).execute()  # the first supervisor died
    assert transitions.start_build(rival, "serial", supervisor_token="b", workers=1, stale_after=30)
    assert Project.get_by_id(project.id).supervisor == "b"


def test_pause_resume_only_while_building(store):
    project = _project(P.BUILDING)
    transitions.pause_build(project)
    assert Project.get_by_id(project.id).paused
    _stale(project, P.CONTAINERIZED)
    with pytest.raises(TransitionRefused, match="no build is running"):
        transitions.resume_build(project)
    assert Project.get_by_id(project.id).paused, "a refused resume writes nothing"
    force_status(project, P.BUILDING)
    transitions.resume_build(project)
    assert not Project.get_by_id(project.id).paused


def test_the_end_of_a_step_moves_only_a_project_in_that_step(store):
    project = _project(P.CONTAINERIZING)
    _stale(project, P.BUILDING)  # e.g. a crashed run's status was overtaken
    transitions.finish_containerize(project)
    transitions.fail_containerize(project, "late")
    assert _status(project) == P.BUILDING
    force_status(project, P.CONTAINERIZING)
    transitions.finish_containerize(project)
    assert _status(project) == P.CONTAINERIZED


def test_scan_rows_move_once(store):
    project = _project(P.DEFINED)
    scan = transitions.begin_scan(project, "h:1")
    assert scan.state == ScanState.RUNNING and _status(project) == P.SCANNING
    with pytest.raises(TransitionRefused):
        transitions.begin_scan(Project.get_by_id(project.id), "h:2")  # one scan per project at a time
    scan.entries = 7
    transitions.finish_scan(project, scan, P.SCANNED, None)
    row = Scan.get_by_id(scan.id)
    assert (row.state, row.entries, _status(project)) == (ScanState.DONE, 7, P.SCANNED)
    transitions.end_scan(project, scan, ScanState.FAILED, "late")  # the scan is over: nothing moves
    assert (Scan.get_by_id(scan.id).state, _status(project)) == (ScanState.DONE, P.SCANNED)
    assert Scan.select().count() == 1


def test_abandon_scans_only_when_none_is_alive(store):
    project = _project(P.DEFINED)
    scan = transitions.begin_scan(project, "h:1")
    assert not transitions.abandon_scans(project, stale_before=scan.updated_at - 1)
    assert Scan.get_by_id(scan.id).state == ScanState.RUNNING and _status(project) == P.SCANNING
    assert transitions.abandon_scans(project, stale_before=scan.updated_at + 1)
    assert Scan.get_by_id(scan.id).state == ScanState.FAILED and _status(project) == P.FAILED


def test_a_job_holds_its_project_until_a_transition_out(store):
    """The move into scanning or containerizing records the owner; a cancel is asked through the row and seen
    only by that owner; the move out (or an abandon by the owner's name) clears it."""
    project = _project(P.SCANNED)
    transitions.begin_containerize(project, "h:1")
    row = Project.get_by_id(project.id)
    assert (row.job_owner, row.job_cancel) == ("h:1", False) and row.job_at is not None
    assert transitions.job_cancel_asked(project.id, "h:1") is False
    assert transitions.request_job_cancel(project) == (P.CONTAINERIZING, "h:1")
    assert transitions.job_cancel_asked(project.id, "h:1") is True
    assert transitions.renew_job(project.id, "h:1") is True
    assert transitions.job_cancel_asked(project.id, "h:9") is None and transitions.renew_job(project.id, "h:9") is None
    assert not transitions.abandon_job(project, "h:9", "gone")  # not the owner's name: nothing moves
    assert _status(project) == P.CONTAINERIZING
    transitions.fail_containerize(project, "cancelled")
    row = Project.get_by_id(project.id)
    assert (row.status, row.job_owner, row.job_at, row.job_cancel) == (P.FAILED, None, None, False)
    assert transitions.request_job_cancel(project) is None  # nothing runs: nothing to ask

    scan = transitions.begin_scan(project, "h:2")
    assert transitions.abandon_job(project, "h:2", "the previous scan was interrupted")
    row = Project.get_by_id(project.id)
    assert (row.status, row.message, row.job_owner) == (P.FAILED, "the previous scan was interrupted", None)
    assert Scan.get_by_id(scan.id).state == ScanState.FAILED


def test_writes_under_a_claim_need_the_claim(store):
    project = _project(P.BUILDING, containers=3)
    a = transitions.claim(project.id, "h:1:1", 30)
    intruder = Holder(a.container.id, "h:9:9")
    assert not transitions.renew(intruder, 30, 5)
    assert not transitions.release(intruder)
    assert not transitions.fail(intruder, a.container, "no")
    assert not transitions.record_built(intruder, a.container, {}, [])
    assert not transitions.still_held(intruder)
    box = Container.get_by_id(a.container.id)
    assert (box.state, box.claimed_by, box.bytes_done) == (C.BUILDING, "h:1:1", 0)
    assert transitions.release(a.holder)
    assert not transitions.fail(a.holder, a.container, "released: no longer mine")
    box = Container.get_by_id(a.container.id)
    assert (box.state, box.claimed_by, box.lease_expires_at, box.started_at) == (C.PENDING, None, None, None)


def test_claims_stop_with_the_build(store):
    project = _project(P.BUILDING, containers=2)
    transitions.pause_build(project)
    assert transitions.claim(project.id, "h:1:1", 30) is None
    transitions.resume_build(project)
    first = transitions.claim(project.id, "h:1:1", 30)
    done = transitions.cancel_build(project)
    assert [c.id for c in done.requeued] == [first.container.id]
    assert transitions.claim(project.id, "h:1:1", 30) is None, "a cancelled build hands out nothing"
    assert not transitions.renew(first.holder, 30, 1), "the cancelled claim is gone"
    assert {c.state for c in Container.select()} == {C.PENDING}


def test_retry_and_finalize(store):
    project = _project(P.BUILDING, containers=2)
    a = transitions.claim(project.id, "h:1:1", 30)
    b = transitions.claim(project.id, "h:1:1", 30)
    assert transitions.fail(a.holder, a.container, "boom")
    assert transitions.finalize_build(project.id) is None, "b is still building"
    assert transitions.record_built(b.holder, b.container, dict(
        path="/stg/x.car", payload_cid="bafy", piece_cid="baga", car_size=10, padded_piece_size=128, seconds=0.1,
        host="h"), [])
    assert transitions.finalize_build(project.id) == P.FAILED
    assert transitions.finalize_build(project.id) is None, "a finished build is finalized once"
    assert transitions.requeue_failed(project) == 1
    assert _status(project) == P.CONTAINERIZED and Container.get_by_id(a.container.id).state == C.PENDING
    assert Car.select().count() == 1
    force_status(project, P.SCANNING)
    with pytest.raises(TransitionRefused, match="cannot retry"):
        transitions.requeue_failed(project)


def test_requeue_orphans_touches_only_building(store):
    project = _project(P.CONTAINERIZED, containers=3)
    _start(project)
    a = transitions.claim(project.id, "h:1:1", 30)
    transitions.claim(project.id, "h:1:1", 30)
    transitions.fail(a.holder, a.container, "x")
    assert transitions.requeue_orphans(project) == 1
    assert sorted(c.state for c in Container.select()) == [C.FAILED, C.PENDING, C.PENDING]


def test_workers_report_known_states(store):
    project = _project(P.BUILDING)
    ids = transitions.preregister_workers(project, "h", 2, keep=[])
    worker = transitions.register_worker("h", 42, project.id, ids[0])
    assert worker.id == ids[0] and worker.pid == 42
    transitions.report_worker(worker.id, WorkerState.WAITING, message="space")
    assert Worker.get_by_id(worker.id).state == WorkerState.WAITING
    transitions.stop_worker(worker.id)
    assert Worker.get_by_id(worker.id).state == WorkerState.STOPPED


def test_unknown_states_are_found(store):
    """The check every store fixture runs at teardown does see a stray value."""
    project = _project(P.DEFINED, containers=1)
    assert unknown_states() == []
    Container.update(state="queued").execute()
    assert unknown_states() == ["container.state='queued'"]
    Container.update(state=C.PENDING).execute()
    assert project.status == P.DEFINED


# --- no state is written anywhere else ----------------------------------------------------------------------

STATE_COLUMNS = {"state", "status"}
WRITERS = {"update", "create", "insert", "insert_many", "get_or_create", "replace"}
MODELS = {"Project", "Scan", "Container", "Worker"}  # the rows whose states core/states.py names
ROW_NAMES = ("project", "scan", "container", "box", "worker", "old")  # how the code names such rows


def _state_writes(path: pathlib.Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITERS
                and isinstance(node.func.value, ast.Name) and node.func.value.id in MODELS):
            for kw in node.keywords:
                if kw.arg in STATE_COLUMNS:
                    yield node.lineno, f"{node.func.attr}({kw.arg}=…)"
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for t in (target.elts if isinstance(target, ast.Tuple) else [target]):
                    if (isinstance(t, ast.Attribute) and t.attr in STATE_COLUMNS and isinstance(t.value, ast.Name)
                            and t.value.id.lower().startswith(ROW_NAMES)):
                        yield node.lineno, f"assignment to .{t.attr}"


def test_every_state_write_goes_through_transitions():
    """(Screens are left out: they hold no model rows, only documents; their `status` is a screen attribute.)"""
    allowed = {PACKAGE / "store" / "transitions.py"}
    found = [f"{path.relative_to(PACKAGE)}:{line}: {what}"
             for layer in ("cli", "core", "services", "store", "worker")
             for path in sorted((PACKAGE / layer).rglob("*.py")) if path not in allowed
             for line, what in _state_writes(path)]
    assert not found, found
