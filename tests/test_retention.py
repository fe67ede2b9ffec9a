"""ade.retention's ordering on a real store and real files: a crash between a deletion's row and
its files leaves only files no record names, which the next collection removes; a half-removed
directory goes whatever its age; a prepared config that a publish reclaims mid-deletion is put
back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import ensure_workspaces, make_settings
from support.retention import age, finished_job

from ade import retention
from ade.errors import NotFound
from ade.ids import new_id
from ade.retention import Retention
from ade.store import open_store

T0 = datetime(2026, 1, 2, tzinfo=UTC)


async def test_a_crash_after_the_row_leaves_an_orphan_that_collection_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "data")
    store = open_store(settings)
    try:
        await ensure_workspaces(store, "ws")
        job = finished_job(settings, T0, workspace="ws")
        await store.insert_job(job)

        def die(*args: object) -> None:
            raise SystemExit("killed between the row and the files")

        monkeypatch.setattr(retention, "_remove_job_files", die)
        with pytest.raises(SystemExit):
            await Retention(store, settings).delete_job("ws", job.id)
        monkeypatch.undo()
        # The record is gone (nobody can reach the half-deleted job); its files remain.
        assert await store.get_job(job.id) is None
        with pytest.raises(NotFound):
            await Retention(store, settings).delete_job("ws", job.id)
        root = settings.jobs_dir / job.id
        assert root.is_dir()

        # Young, it may be a submission in flight: kept. Old: an orphan, removed.
        report = await Retention(store, settings).collect(older_than_days=None, dry_run=False)
        assert report.orphans == () and root.is_dir()
        age(root)
        report = await Retention(store, settings).collect(older_than_days=None, dry_run=True)
        assert report.orphans == (f"jobs/{job.id}",) and root.is_dir()
        report = await Retention(store, settings).collect(older_than_days=None, dry_run=False)
        assert report.orphans == (f"jobs/{job.id}",)
        assert report.bytes > 0
        assert not root.exists()
    finally:
        store.close()


async def test_a_half_removed_directory_goes_whatever_its_age(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    half = settings.jobs_dir / f".deleting-{new_id()}-0a1b"
    (half / "inputs").mkdir(parents=True)
    (half / "inputs" / "d").write_bytes(b"x")
    (half / "inputs").chmod(0o555)
    building = settings.jobs_dir / ".creating-x"  # a submission's build: not ours to touch
    building.mkdir()
    # a deleted workspace's documents folder, hidden and then half removed
    half_workspace = settings.documents_dir / ".deleting-team-0a1b"
    half_workspace.mkdir(parents=True)
    (half_workspace / new_id()).write_bytes(b"x")
    store = open_store(settings)
    try:
        report = await Retention(store, settings).collect(older_than_days=None, dry_run=False)
    finally:
        store.close()
    assert report.orphans == tuple(
        sorted(str(p.relative_to(settings.data_dir)) for p in (half, half_workspace))
    )
    assert not half.exists() and building.is_dir()
    assert not half_workspace.exists()


class _RowAppearsMidway:
    """A store whose config gains a row between the two checks of a deletion: a publish in
    another workspace reclaimed the prepared folder at that moment."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.asked = 0

    async def config_in_use(self, config_id: str) -> bool:
        self.asked += 1
        return self.asked > 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_prepared_config_reclaimed_mid_deletion_is_put_back(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    prepared = settings.venvs_dir / "cfg0123"
    (prepared / "ade-build" / "snapshot").mkdir(parents=True)
    store = open_store(settings)
    try:
        racing = _RowAppearsMidway(store)
        dropped = await Retention(racing, settings)._drop_prepared("cfg0123")  # type: ignore[arg-type]
        assert dropped is False and racing.asked == 2
        assert (prepared / "ade-build" / "snapshot").is_dir()
        assert [p.name for p in settings.venvs_dir.iterdir()] == ["cfg0123"]
        # Nobody holds it: it goes.
        assert await Retention(store, settings)._drop_prepared("cfg0123") is True
        assert list(settings.venvs_dir.iterdir()) == []
    finally:
        store.close()
