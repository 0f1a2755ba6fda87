"""The data model of DESIGN.md as peewee models. Sizes are 64-bit; paths are exact bytes; times are epoch seconds.

Times are floats from the writer's clock (time.time()), which keeps SQLite and PostgreSQL identical; leases
compare against the claimer's clock, so hosts sharing a PostgreSQL should run NTP.
"""
from __future__ import annotations

import time
from typing import Callable

import peewee

from ptolemy_tui.core.states import ContainerState, ProjectStatus, ScanState, WorkerState
from ptolemy_tui.store.fields import PathField

database = peewee.DatabaseProxy()


# The store's clock (leases, heartbeats, timestamps). A seam: a test moves it past a lease instead of sleeping.
clock: Callable[[], float] = time.time


def now() -> float:
    return clock()


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Meta(BaseModel):
    """Key/value facts about the store itself (the schema version)."""

    key = peewee.CharField(max_length=64, primary_key=True)
    value = peewee.TextField()


# State values: core/states.py; every write of them: store/transitions.py.


class Project(BaseModel):
    name = peewee.CharField(max_length=64, unique=True)
    target_dir = peewee.TextField()
    staging_dir = peewee.TextField()
    car_size = peewee.BigIntegerField()
    shard_size = peewee.BigIntegerField()
    load_type = peewee.CharField(max_length=16, default="blitz")
    encryption = peewee.CharField(max_length=16, default="none")
    workers = peewee.IntegerField()
    staging_budget = peewee.BigIntegerField(null=True)  # None: the staging filesystem's free space
    # An s3:// target's connection (never a secret: credentials come from the AWS chain of each host)
    s3_endpoint = peewee.TextField(null=True)  # None: AWS S3
    s3_region = peewee.CharField(max_length=64, null=True)
    s3_profile = peewee.CharField(max_length=128, null=True)
    s3_no_sign = peewee.BooleanField(default=False)  # anonymous requests (public buckets)
    status = peewee.CharField(max_length=32, default=ProjectStatus.DEFINED)
    message = peewee.TextField(null=True)
    paused = peewee.BooleanField(default=False)
    created_at = peewee.DoubleField(default=now)
    updated_at = peewee.DoubleField(default=now)
    # The running build's supervisor ("host:pid"; one per project, taken by compare-and-set in the store), its
    # heartbeat, and the number of workers it keeps alive (`ptolemy build NAME --workers N` changes it live).
    supervisor = peewee.CharField(max_length=128, null=True)
    supervised_at = peewee.DoubleField(null=True)
    build_workers = peewee.IntegerField(null=True)
    car_version = peewee.IntegerField(default=1)  # 1: CARv1; 2: the same payload wrapped as CARv2 (go-car's index)
    profile = peewee.CharField(max_length=16, default="kubo")  # the DAG layout (core/unixfs.PROFILES) packed and built
    # The process running the project's scan or containerize ("host:pid"; set by the transition into scanning or
    # containerizing, cleared by the one out), its heartbeat, and a cancel asked of it through the store.
    job_owner = peewee.CharField(max_length=128, null=True)
    job_at = peewee.DoubleField(null=True)
    job_cancel = peewee.BooleanField(default=False)


class Scan(BaseModel):
    """One scan run of a project, with live progress (written about twice a second) and its summary."""

    project = peewee.ForeignKeyField(Project, backref="scans", on_delete="CASCADE")
    state = peewee.CharField(max_length=16, default=ScanState.RUNNING)
    started_at = peewee.DoubleField(default=now)
    finished_at = peewee.DoubleField(null=True)
    updated_at = peewee.DoubleField(default=now)  # progress heartbeat: a running scan older than a minute is dead
    entries = peewee.BigIntegerField(default=0)
    files = peewee.BigIntegerField(default=0)
    directories = peewee.BigIntegerField(default=0)
    symlinks = peewee.BigIntegerField(default=0)
    skipped = peewee.BigIntegerField(default=0)  # sockets, FIFOs, devices
    errors = peewee.BigIntegerField(default=0)  # permission and other OS errors
    bytes = peewee.BigIntegerField(default=0)
    rate = peewee.DoubleField(default=0.0)  # entries per second
    current_dir = PathField(null=True)
    added = peewee.BigIntegerField(default=0)
    changed = peewee.BigIntegerField(default=0)
    removed = peewee.BigIntegerField(default=0)
    message = peewee.TextField(null=True)


class Directory(BaseModel):
    """Per-directory aggregates, so opening any directory of the tree view is one indexed query."""

    project = peewee.ForeignKeyField(Project, backref="directories", on_delete="CASCADE")
    parent = peewee.ForeignKeyField("self", null=True, backref="children", on_delete="CASCADE")
    path = PathField()  # relative to target_dir; b"" for the root
    name = PathField()
    total_bytes = peewee.BigIntegerField(default=0)  # regular-file bytes below, recursively
    total_files = peewee.BigIntegerField(default=0)  # regular files below, recursively
    file_count = peewee.BigIntegerField(default=0)  # entries directly inside that are not directories
    dir_count = peewee.BigIntegerField(default=0)  # subdirectories directly inside
    error = peewee.TextField(null=True)

    class Meta:
        indexes = ((("project", "path"), True), (("project", "parent"), False))


# File.kind values.
FILE_KINDS = ("file", "symlink", "special", "error")


class File(BaseModel):
    # No separate index on project: (project, path) below serves it. Every index costs scan inserts (millions
    # of rows), so File keeps two: (project, path) and directory (the tree view's and the cascade's lookup).
    project = peewee.ForeignKeyField(Project, backref="files", on_delete="CASCADE", index=False)
    directory = peewee.ForeignKeyField(Directory, null=True, backref="files", on_delete="CASCADE")
    path = PathField()  # relative to target_dir, exact bytes
    name = PathField()
    size = peewee.BigIntegerField(default=0)
    mtime_ns = peewee.BigIntegerField(default=0)
    inode = peewee.BigIntegerField(default=0)
    kind = peewee.CharField(max_length=16, default="file")
    link_target = PathField(null=True)
    error = peewee.TextField(null=True)
    etag = peewee.CharField(max_length=128, null=True)  # an object's ETag (S3 sources); None for local files

    class Meta:
        indexes = ((("project", "path"), True),)



class Container(BaseModel):
    project = peewee.ForeignKeyField(Project, backref="containers", on_delete="CASCADE")
    seq = peewee.IntegerField()
    state = peewee.CharField(max_length=16, default=ContainerState.PENDING)
    predicted_size = peewee.BigIntegerField(default=0)  # exact CAR length without dedup
    data_bytes = peewee.BigIntegerField(default=0)  # source bytes packed into it
    item_count = peewee.IntegerField(default=0)
    shard_count = peewee.IntegerField(default=0)
    claimed_by = peewee.CharField(max_length=128, null=True)  # "host:pid"
    lease_expires_at = peewee.DoubleField(null=True)
    attempts = peewee.IntegerField(default=0)
    error = peewee.TextField(null=True)
    bytes_done = peewee.BigIntegerField(default=0)
    started_at = peewee.DoubleField(null=True)
    finished_at = peewee.DoubleField(null=True)
    # The fencing token: raised by every claim, so a worker that stalled past its lease can tell (and the store
    # can refuse) that the container is no longer its own; its files are named after it.
    generation = peewee.BigIntegerField(default=0)

    class Meta:
        indexes = ((("project", "seq"), True), (("project", "state"), False))


class ContainerItem(BaseModel):
    # container is served by the (container, seq) index, file by its own FK index: no duplicates (inserts of
    # a million items pay for every index).
    container = peewee.ForeignKeyField(Container, backref="items", on_delete="CASCADE", index=False)
    file = peewee.ForeignKeyField(File, backref="items", on_delete="CASCADE")
    seq = peewee.IntegerField()  # order inside the container
    offset = peewee.BigIntegerField(default=0)
    length = peewee.BigIntegerField(default=0)
    shard_index = peewee.IntegerField(null=True)  # N of `<name>.ptolemy<N>`; None for a whole file
    car_path = PathField()  # the entry's path inside the CAR

    class Meta:
        indexes = ((("container", "seq"), True),)


class Car(BaseModel):
    project = peewee.ForeignKeyField(Project, backref="cars", on_delete="CASCADE")
    container = peewee.ForeignKeyField(Container, backref="cars", unique=True, on_delete="CASCADE")
    path = peewee.TextField()
    payload_cid = peewee.CharField(max_length=128)
    piece_cid = peewee.CharField(max_length=128)
    piece_cid_v2 = peewee.CharField(max_length=128, null=True)
    car_size = peewee.BigIntegerField()
    padded_piece_size = peewee.BigIntegerField()
    built_at = peewee.DoubleField(default=now)
    seconds = peewee.DoubleField(default=0.0)
    host = peewee.CharField(max_length=128, default="")
    stale_reason = peewee.TextField(null=True)  # set when a source file changed after the build


class CarEntry(BaseModel):
    """The file name ↔ CID map: one row per file or shard in a CAR."""

    car = peewee.ForeignKeyField(Car, backref="entries", on_delete="CASCADE")
    path = PathField()  # path inside the CAR
    cid = peewee.CharField(max_length=128)
    file = peewee.ForeignKeyField(File, null=True, backref="car_entries", on_delete="SET NULL")
    offset = peewee.BigIntegerField(default=0)
    length = peewee.BigIntegerField(default=0)

    class Meta:
        indexes = ((("car",), False), (("cid",), False))



class Worker(BaseModel):
    host = peewee.CharField(max_length=128)
    pid = peewee.IntegerField()
    project = peewee.ForeignKeyField(Project, null=True, backref="project_workers", on_delete="SET NULL")
    state = peewee.CharField(max_length=16, default=WorkerState.IDLE)
    container = peewee.ForeignKeyField(Container, null=True, backref="workers", on_delete="SET NULL")
    bytes_done = peewee.BigIntegerField(default=0)
    bytes_total = peewee.BigIntegerField(default=0)
    rate = peewee.DoubleField(default=0.0)  # bytes per second
    staging_total = peewee.BigIntegerField(default=0)
    staging_used = peewee.BigIntegerField(default=0)
    staging_free = peewee.BigIntegerField(default=0)
    space_needed = peewee.BigIntegerField(default=0)  # waiting: the next CAR's predicted size + reserve
    rss = peewee.BigIntegerField(default=0)
    cpu_percent = peewee.DoubleField(default=0.0)
    message = peewee.TextField(null=True)
    started_at = peewee.DoubleField(default=now)
    heartbeat_at = peewee.DoubleField(default=now)


class Event(BaseModel):
    project = peewee.ForeignKeyField(Project, null=True, backref="events", on_delete="CASCADE")
    time = peewee.DoubleField(default=now)
    level = peewee.CharField(max_length=16, default="info")
    text = peewee.TextField()

    class Meta:
        indexes = ((("project", "time"), False),)


class CarPlan(BaseModel):
    """An inline CAR's plan (core.carplan): its bytes regenerated from the sources on demand, no CAR file.

    In the store rather than in a staging file, so a server on any host that reaches the store can serve it.
    """

    car = peewee.ForeignKeyField(Car, backref="plans", unique=True, on_delete="CASCADE")
    data = peewee.BlobField()


# Transfer.state values.
TRANSFER_STATES = ("active", "done", "aborted", "failed")


class Transfer(BaseModel):
    """One HTTP request for a piece, written by `ptolemy serve` about once a second while it runs."""

    server = peewee.CharField(max_length=128)  # "host:pid" of the serving process
    client = peewee.CharField(max_length=128)
    project = peewee.ForeignKeyField(Project, null=True, backref="transfers", on_delete="CASCADE")
    piece_cid = peewee.CharField(max_length=128)
    inline = peewee.BooleanField(default=False)
    range_start = peewee.BigIntegerField(default=0)
    range_end = peewee.BigIntegerField(default=0)  # exclusive
    bytes_sent = peewee.BigIntegerField(default=0)
    rate = peewee.DoubleField(default=0.0)  # bytes per second
    status = peewee.IntegerField(default=200)
    state = peewee.CharField(max_length=16, default="active")
    message = peewee.TextField(null=True)
    started_at = peewee.DoubleField(default=now)
    updated_at = peewee.DoubleField(default=now)
    finished_at = peewee.DoubleField(null=True)

    class Meta:
        indexes = ((("project", "started_at"), False),)


class DatasetRoot(BaseModel):
    """One dataset root DAG and its DAG CAR (`ptolemy dag`). Each run adds a row; the newest is the project's
    current root, older ones stay recorded (a rescan and repack gives a new root)."""

    project = peewee.ForeignKeyField(Project, backref="dataset_roots", on_delete="CASCADE")
    root_cid = peewee.CharField(max_length=128)
    path = peewee.TextField()
    piece_cid = peewee.CharField(max_length=128)
    piece_cid_v2 = peewee.CharField(max_length=128, null=True)
    car_size = peewee.BigIntegerField()
    padded_piece_size = peewee.BigIntegerField()
    car_version = peewee.IntegerField(default=1)
    blocks = peewee.BigIntegerField(default=0)
    files = peewee.BigIntegerField(default=0)
    sharded_files = peewee.BigIntegerField(default=0)
    bytes = peewee.BigIntegerField(default=0)
    created_at = peewee.DoubleField(default=now)
    seconds = peewee.DoubleField(default=0.0)
    host = peewee.CharField(max_length=128, default="")


class DatasetFile(BaseModel):
    """The whole-file CID of a sharded file under one dataset root (a whole file's CID is its CarEntry's)."""

    dataset_root = peewee.ForeignKeyField(DatasetRoot, backref="whole_files", on_delete="CASCADE")
    file = peewee.ForeignKeyField(File, null=True, backref="whole_cids", on_delete="SET NULL")
    path = PathField()
    cid = peewee.CharField(max_length=128)


ALL_MODELS = (Meta, Project, Scan, Directory, File, Container, ContainerItem, Car, CarEntry, Worker, Event, CarPlan,
              Transfer, DatasetRoot, DatasetFile)
