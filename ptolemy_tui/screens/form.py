"""The project form (modal): every field with inline validation, a directory picker, the staging disk's free
space, and the piece size and utilisation that the CAR size implies."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label, Select, Static
from textual.worker import get_current_worker

from ptolemy_tui.core.sizes import SizeError, format_size, parse_size, piece_fit
from ptolemy_tui.errors import PtolemyError
from ptolemy_tui.screens import fmt
from ptolemy_tui.services import session, views

FIELDS = [
    # key, label, placeholder
    ("source", "Source", ""),
    ("name", "Name", "letters, digits, . _ -"),
    ("target_dir", "Target dir", "the tree to prepare"),
    ("s3_endpoint", "S3 endpoint", "default: AWS S3; any S3-compatible URL"),
    ("s3_region", "S3 region", "default: the AWS config's region"),
    ("s3_profile", "S3 profile", "default: the AWS credential chain"),
    ("s3_no_sign", "Anonymous", ""),
    ("staging_dir", "Staging dir", "where CARs are written"),
    ("car_size", "CAR size", "e.g. 31.5GiB"),
    ("shard_size", "Shard size", "e.g. 1GiB; 43.5MiB or 7569MiB: whole-file CIDs = ipfs add"),
    ("load_type", "Load type", ""),
    ("profile", "CAR profile", ""),
    ("encryption", "Encryption", ""),
    ("workers", "Workers", "default: CPU count"),
    ("staging_budget", "Staging budget", "default: free space"),
]


FLAG_LABELS = {"--target": "Target dir", "--staging-budget": "Staging budget", "--staging": "Staging dir",
               "--car-size": "CAR size", "--shard-size": "Shard size", "--load-type": "Load type",
               "--encryption": "Encryption", "--workers": "Workers", "project name": "Name",
               "--s3-endpoint": "S3 endpoint", "--s3-region": "S3 region", "--s3-profile": "S3 profile",
               "--no-sign-request": "Anonymous", "--profile": "CAR profile"}
S3_FIELDS = ("s3_endpoint", "s3_region", "s3_profile", "s3_no_sign")
TARGET_HINTS = {"local": "the tree to prepare", "s3": "BUCKET or BUCKET/PREFIX (s3:// optional)"}


def spec_values(values: dict[str, str]) -> dict[str, Any]:
    """The form's raw values as ProjectSpec fields: a bucket target gets its s3:// (the field takes a bare
    BUCKET[/PREFIX] too); a local directory carries no S3 option."""
    spec: dict[str, Any] = {k: v for k, v in values.items() if k != "source"}
    if values.get("source") == "s3":
        target = values.get("target_dir", "").strip()
        if target and not target.startswith("s3://"):
            target = "s3://" + target.lstrip("/")
        spec["target_dir"] = target
        spec["s3_no_sign"] = values.get("s3_no_sign") == "yes"
    else:
        spec.update(s3_endpoint="", s3_region="", s3_profile="", s3_no_sign=False)
    return spec
_FLAG_VALUE = re.compile(r"^(--[a-z-]+|project name) (?:'[^']*'|\S+): ")


def form_words(message: str) -> str:
    """A validation message in the form's words: '--target /x: no such directory; …' reads 'Target dir: no such
    directory; …' (the value is in the field already), and every other flag becomes its field's label."""
    match = _FLAG_VALUE.match(message)
    if match:
        message = f"{FLAG_LABELS.get(match.group(1), match.group(1))}: {message[match.end():]}"
    for flag, label in FLAG_LABELS.items():
        message = message.replace(flag, label)
    return message[:1].upper() + message[1:]


def complete_path(text: str) -> str:
    """Shell-like completion of a directory path: the longest common continuation of the last component among the
    directories there (hidden ones only when asked for), with a trailing / when exactly one matches."""
    expanded = os.path.expanduser(text or "")
    parent, prefix = os.path.split(expanded)
    try:
        names = sorted(e.name for e in os.scandir(parent or ".") if e.is_dir()
                       and e.name.startswith(prefix) and (prefix.startswith(".") or not e.name.startswith(".")))
    except OSError:
        return text
    if not names:
        return text
    common = os.path.commonprefix(names)
    done = os.path.join(parent, common)
    if len(names) == 1:
        done += os.sep
    return done if not text.startswith("~") else "~" + done[len(os.path.expanduser("~")):]


class DirectoryPicker(ModalScreen[str | None]):
    """Pick a directory: type a path (tab completes, enter jumps there), or walk the tree with arrows and enter;
    `u` (or the button) takes the highlighted directory. Opens at the nearest existing parent of the field."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("u", "use", "Use directory"),
        Binding("backspace", "up", "Parent dir"),
    ]

    class DirsOnly(DirectoryTree):
        BINDINGS = [Binding("j", "cursor_down", show=False), Binding("k", "cursor_up", show=False)]

        def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
            return [p for p in paths if p.is_dir() and not p.name.startswith(".")]

    class PathInput(Input):
        BINDINGS = [Binding("tab", "complete", "Complete", show=False)]

        def action_complete(self) -> None:
            self.value = complete_path(self.value)
            self.cursor_position = len(self.value)

    def __init__(self, start: str):
        super().__init__()
        path = Path(start).expanduser() if start else Path.home()
        while not path.is_dir() and path != path.parent:
            path = path.parent
        self.start = path

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog picker"):
            yield Label("Choose a directory (type a path: tab completes, enter goes there)", classes="title")
            yield self.PathInput(str(self.start) + os.sep, id="picked-path", compact=True)
            yield Static(str(self.start), id="picked")
            yield self.DirsOnly(str(self.start), id="dirs")
            with Horizontal(classes="buttons"):
                yield Button("Use (u)", id="use", variant="primary")
                yield Button("Parent (⌫)", id="up")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#dirs").focus()

    def current(self) -> Path:
        tree = self.query_one("#dirs", DirectoryTree)
        node = tree.cursor_node
        if node is not None and node.data is not None:
            return Path(node.data.path)
        return Path(tree.path)

    def on_tree_node_highlighted(self, event) -> None:
        self.query_one("#picked", Static).update(str(self.current()))

    @on(Input.Submitted, "#picked-path")
    def jump(self, event: Input.Submitted) -> None:
        """Enter on a typed path: show that directory (or its nearest existing parent) in the tree."""
        event.stop()
        path = Path(os.path.expanduser(event.value.strip() or "/"))
        while not path.is_dir() and path != path.parent:
            path = path.parent
        tree = self.query_one("#dirs", DirectoryTree)
        tree.path = path
        self.query_one("#picked", Static).update(str(path))
        tree.focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        {"use": self.action_use, "up": self.action_up, "cancel": self.action_cancel}[event.button.id]()

    def action_use(self) -> None:
        self.dismiss(str(self.current()))

    def action_up(self) -> None:
        if isinstance(self.focused, Input):
            return  # backspace edits the typed path
        tree = self.query_one("#dirs", DirectoryTree)
        tree.path = Path(tree.path).parent

    def action_cancel(self) -> None:
        self.dismiss(None)


class ProjectForm(ModalScreen[str | None]):
    """Create a project (project_id None) or edit one. Dismisses with the project's name when saved."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+o", "pick", "Pick directory"),
    ]

    def __init__(self, project_id: int | None = None):
        super().__init__()
        self.project_id = project_id
        self.loaded = project_id is None
        self.errors: dict[str, str] = {}
        self.saving = False
        self.touched: set[str] = set()  # fields the operator changed: only their errors show before a save
        self.save_errors: dict[str, str] = {}  # what the save refused (a duplicate name) that validation cannot see
        self.tried_save = False

    def compose(self) -> ComposeResult:
        title = "New project" if self.project_id is None else "Edit project"
        with Vertical(classes="dialog form"):
            yield Label(title, classes="title", id="form-title")
            with VerticalScroll(id="fields"):
                for key, label, placeholder in FIELDS:
                    with Horizontal(classes="field", id=f"row-{key}"):
                        yield Label(label, classes="field-label")
                        if key == "load_type":
                            yield Select([("blitz: all containers in parallel", "blitz"),
                                          ("serial: one at a time, staging-safe", "serial"),
                                          ("inline: no CAR written, served from the sources", "inline")],
                                         value="blitz", allow_blank=False, compact=True, id=key)
                        elif key == "source":
                            yield Select([("local directory", "local"), ("S3 bucket", "s3")], value="local",
                                         allow_blank=False, compact=True, id=key)
                        elif key == "s3_no_sign":
                            yield Select([("no: sign with the AWS credential chain", "no"),
                                          ("yes: a public bucket, unsigned requests", "yes")], value="no",
                                         allow_blank=False, compact=True, id=key)
                        elif key == "profile":
                            yield Select([("kubo: as ipfs add --cid-version 1 --raw-leaves", "kubo"),
                                          ("go-car: as car create", "go-car")],
                                         value="kubo", allow_blank=False, compact=True, id=key)
                        elif key == "encryption":
                            yield Select([("none", "none")], value="none", allow_blank=False, compact=True, id=key)
                        else:
                            yield Input(placeholder=placeholder, compact=True, id=key,
                                        value=self._default(key))
                        if key in ("target_dir", "staging_dir"):
                            pick = Button("…", id=f"pick-{key}", classes="pick", compact=True)
                            pick.can_focus = False  # tab goes field to field; ctrl+o (or a click) picks
                            yield pick
                    yield Static("", classes="field-error", id=f"err-{key}")
                yield Static("", id="piece-info", classes="info")
                yield Static("", id="staging-info", classes="info")
                yield Static("", id="warnings", classes="info warn")
            with Horizontal(classes="buttons"):
                yield Button("Save (^s)", id="save", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    @staticmethod
    def _default(key: str) -> str:
        from ptolemy_tui.services.projects import DEFAULT_CAR_SIZE, DEFAULT_SHARD_SIZE

        return {"car_size": DEFAULT_CAR_SIZE, "shard_size": DEFAULT_SHARD_SIZE}.get(key, "")

    def on_mount(self) -> None:
        for static in self.query(".field-error"):
            static.display = False
        self._show_source("local")
        self.query_one("#warnings").display = False
        if self.project_id is not None:
            self.query_one("#name", Input).disabled = True
            self._load()
        else:
            self.query_one("#name", Input).focus()
            self._update_piece()
            self._validate_later()

    @work(thread=True, exit_on_error=False)
    def _load(self) -> None:
        try:
            values = session.call(views.project_fields, self.project_id)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.notify, f"cannot load the project: {exc}", severity="error")
            return
        self.app.call_from_thread(self._fill, values)

    def _fill(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            widget = self.query_one(f"#{key}")
            widget.value = value
        self._show_source(values.get("source", "local"))
        self.loaded = True
        self.query_one("#target_dir", Input).focus()
        self._update_piece()
        self._validate_later()

    # Values and validation ----------------------------------------------------------------------------------

    def values(self) -> dict[str, str]:
        return {key: str(self.query_one(f"#{key}").value or "") for key, _, _ in FIELDS}

    @on(Input.Changed)
    @on(Select.Changed)
    def changed(self, event) -> None:
        if self.loaded and event.control.id:
            self.touched.add(event.control.id)
            self.save_errors.pop(event.control.id, None)
        if event.control.id == "car_size":
            self._update_piece()
        if event.control.id == "source":
            self._show_source(str(event.value))
        self._validate_later()

    def _show_source(self, source: str) -> None:
        """The S3 fields only for a bucket; the directory picker only for a directory."""
        s3 = source == "s3"
        for key in S3_FIELDS:
            self.query_one(f"#row-{key}").display = s3
        self.query_one("#pick-target_dir").display = not s3
        self.query_one("#target_dir", Input).placeholder = TARGET_HINTS["s3" if s3 else "local"]

    def _update_piece(self) -> None:
        info = self.query_one("#piece-info", Static)
        text = self.query_one("#car_size", Input).value
        try:
            car = parse_size(text)
        except SizeError:
            info.update("piece: -")
            return
        fit = piece_fit(car)
        info.update(f"piece: a {fmt.size(car)} CAR lands in a {format_size(fit.padded_piece)} piece, "
                    f"{fit.utilisation:.1%} used")

    def _validate_later(self) -> None:
        if hasattr(self, "_validate_timer"):
            self._validate_timer.stop()
        self._validate_timer = self.set_timer(0.25, self._validate)

    def _validate(self) -> None:
        if self.loaded:
            self._validate_worker(self.values())

    @work(thread=True, exclusive=True, group="validate", exit_on_error=False)
    def _validate_worker(self, values: dict[str, str]) -> None:
        from ptolemy_tui.services import projects

        errors: dict[str, str] = {}
        warnings: list[str] = []
        spec = projects.ProjectSpec(**spec_values(values))
        try:
            valid, errors = projects.validate_all(spec, check_name=self.project_id is None)
            warnings = valid.warnings if valid else []
        except PtolemyError as exc:
            errors = {"name": str(exc)}
        usage = views.disk_usage(values["staging_dir"])
        if get_current_worker().is_cancelled:
            return
        self.app.call_from_thread(self._show_validation, errors, warnings, usage, values["staging_dir"])

    def _show_validation(self, errors: dict[str, str], warnings: list[str], usage: views.StagingView | None,
                         staging: str) -> None:
        self.errors = {key: form_words(message) for key, message in {**errors, **self.save_errors}.items()}
        if not self.tried_save:
            self.errors = {k: v for k, v in self.errors.items() if k in self.touched}
        for key, _, _ in FIELDS:
            static = self.query_one(f"#err-{key}", Static)
            message = self.errors.get(key, "")
            static.update(f"✗ {message}" if message else "")
            static.display = bool(message)
            self.query_one(f"#{key}").set_class(bool(message), "invalid")
        info = self.query_one("#staging-info", Static)
        if usage and staging:
            info.update(f"staging: {fmt.size(usage.free)} free of {fmt.size(usage.total)} ({usage.path})")
        else:
            info.update("staging: -")
        warning = self.query_one("#warnings", Static)
        warning.update("\n".join(f"⚠ {form_words(w)}" for w in warnings))
        warning.display = bool(warnings)

    # Actions ------------------------------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        button = event.button.id or ""
        if button == "save":
            self.action_save()
        elif button == "cancel":
            self.action_cancel()
        elif button.startswith("pick-"):
            self._pick(button.removeprefix("pick-"))

    def action_pick(self) -> None:
        focused = self.focused
        key = focused.id if focused is not None and focused.id in ("target_dir", "staging_dir") else "target_dir"
        if key == "target_dir" and self.query_one("#source", Select).value == "s3":
            return  # a bucket is typed, not picked
        self._pick(key)

    def _pick(self, key: str) -> None:
        field = self.query_one(f"#{key}", Input)

        def chosen(path: str | None) -> None:
            if path:
                field.value = path
                field.focus()

        self.app.push_screen(DirectoryPicker(field.value), chosen)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        if self.saving or not self.loaded:
            return
        self.saving = True
        self.tried_save = True
        self._save_worker(self.values())

    @work(thread=True, exclusive=True, group="save", exit_on_error=False)
    def _save_worker(self, values: dict[str, str]) -> None:
        from ptolemy_tui.services import projects

        try:
            if self.project_id is None:
                spec = projects.ProjectSpec(**spec_values(values))
                project, warnings = session.call(projects.create, spec)
            else:
                changes = {k: v for k, v in spec_values(values).items() if k != "name"}
                changes["staging_budget"] = changes["staging_budget"] or "none"
                if not changes.get("workers"):
                    changes.pop("workers")
                project, warnings = session.call(projects.edit, values["name"], changes)
        except projects.FieldError as exc:
            self.app.call_from_thread(self._save_failed, exc.field, str(exc))
            return
        except PtolemyError as exc:
            self.app.call_from_thread(self._save_failed, None, str(exc))
            return
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self._save_failed, None, f"could not save: {exc}")
            return
        self.app.call_from_thread(self._saved, project.name, warnings)

    def _save_failed(self, field: str | None, message: str) -> None:
        self.saving = False
        if field:
            self.save_errors[field] = message  # kept until that field changes (a later check cannot see it)
            self._show_validation({}, [], None, "")
            self.query_one(f"#{field}").focus()
        else:
            self.notify(message, severity="error", timeout=8)

    def _saved(self, name: str, warnings: list[str]) -> None:
        verb = "created" if self.project_id is None else "saved"
        self.notify(f"project {name} {verb}" + ("".join(f"\n⚠ {w}" for w in warnings)))
        self.dismiss(name)
