"""The project form with an S3 bucket as the source, against a real `rclone serve s3` with --auth-key: each failed
listing has its own one-line message on its field, and a bucket that lists saves as an s3:// project."""
from __future__ import annotations

import asyncio

import pytest

from tests.s3server import S3Server
from tests.screens.helpers import wait_for

pytestmark = pytest.mark.timeout(90)


def test_form_validates_a_bucket_by_listing_it(sqlite_store, tmp_path, monkeypatch):
    from textual.widgets import Input, Select, Static

    from ptolemy_tui.screens.app import PtolemyApp
    from ptolemy_tui.screens.form import ProjectForm
    from ptolemy_tui.store.models import Project

    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFORM")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "form-secret-key")
    (tmp_path / "served" / "bkt" / "dir").mkdir(parents=True)
    (tmp_path / "served" / "bkt" / "dir" / "f.txt").write_bytes(b"f\n")
    server = S3Server(str(tmp_path / "served"), auth=("AKIDFORM", "form-secret-key")).start()

    async def main():
        app = PtolemyApp(watch_tty=False)
        async with app.run_test(size=(110, 44)) as pilot:
            await pilot.pause()
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, ProjectForm))
            form = app.screen
            assert not form.query_one("#row-s3_endpoint").display  # local directory by default
            form.query_one("#source", Select).value = "s3"
            await wait_for(pilot, lambda: form.query_one("#row-s3_endpoint").display)
            assert not form.query_one("#pick-target_dir").display
            form.query_one("#name", Input).value = "bucket"
            form.query_one("#staging_dir", Input).value = str(tmp_path / "staging")
            form.query_one("#s3_endpoint", Input).value = server.url

            def error(key):
                static = form.query_one(f"#err-{key}", Static)
                return str(static.render()) if static.display else ""

            async def shows(key, words, **values):
                for field, value in values.items():
                    form.query_one(f"#{field}").value = value
                await pilot.press("ctrl+s")
                await wait_for(pilot, lambda: words in error(key), timeout=20)
                assert "\n" not in error(key).strip() and "--" not in error(key)

            await shows("target_dir", "bucket 'nobucket' does not exist", target_dir="nobucket")
            await shows("target_dir", "access denied to s3://bkt for anonymous requests", target_dir="bkt",
                        s3_no_sign="yes")
            await shows("s3_endpoint", "cannot reach the S3 endpoint http://127.0.0.1:9", s3_no_sign="no",
                        s3_endpoint="http://127.0.0.1:9")
            form.query_one("#s3_endpoint", Input).value = server.url
            await pilot.pause()
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: not isinstance(app.screen, ProjectForm), timeout=20)

    try:
        asyncio.run(main())
    finally:
        server.stop()
    project = Project.get(Project.name == "bucket")
    assert (project.target_dir, project.s3_endpoint, project.s3_no_sign) == ("s3://bkt", server.url, False)
