"""The read models page from SQL by key: container items by their (container, seq) index, with the same rows
an OFFSET would give, and the filtered listing still works."""
from __future__ import annotations

from ptolemy_tui.services import containerize, scan, views
from ptolemy_tui.store.models import Container
from tests.services.pipeline_helpers import new_project, write


def test_container_items_page_by_seq(store, tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for n in range(57):
        write(src / "d" / f"f{n:03d}", n + 1)
    project = new_project(tmp_path)
    scan.run_scan(project)
    containerize.containerize(project)
    box = Container.select().where(Container.project == project).order_by(Container.seq).first()
    whole = views.container_items(box.id, 0, 1000)
    assert whole.total == box.item_count == len(whole.rows) == 57
    paged = []
    for offset in range(0, 57, 10):
        page = views.container_items(box.id, offset, 10)
        assert page.total == 57
        paged += page.rows
    assert paged == list(whole.rows)
    assert [r.seq for r in paged] == list(range(57))
    filtered = views.container_items(box.id, 0, 5, "f01")
    assert filtered.total == 10 and [r.car_path.rsplit("/", 1)[1] for r in filtered.rows] == [
        f"f01{n}" for n in range(5)]


def test_filtered_items_page_by_key_after_the_last_seq(store, tmp_path):
    """A filter's matches have gaps in seq: each page starts after the last seq shown (no OFFSET), and the
    pages together are the whole filtered listing."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for n in range(60):
        write(src / "d" / (f"keep{n:03d}" if n % 3 else f"skip{n:03d}"), 1)
    project = new_project(tmp_path)
    scan.run_scan(project)
    containerize.containerize(project)
    box = Container.select().where(Container.project == project).order_by(Container.seq).first()
    whole = views.container_items(box.id, 0, 1000, "keep")
    assert whole.total == len(whole.rows) == 40
    paged, after = [], None
    for offset in range(0, 40, 7):
        page = views.container_items(box.id, offset, 7, "keep", after)
        assert page.total == 40
        paged += page.rows
        after = page.rows[-1].seq
    assert paged == list(whole.rows)
    assert views.container_items(box.id, 0, 7, "keep", whole.rows[-1].seq).rows == ()
