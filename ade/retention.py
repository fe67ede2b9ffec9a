"""Deleting jobs, documents and config versions, by request or by age, files and rows together.

Theory of operation
-------------------
**Row first, then files.** A deletion is one store transaction that checks nothing active needs
the row and removes it (:class:`ade.protocols.RetentionStore`); only then do the files go. So a
record the API shows always has all its files, and a crash between the two leaves only files
that no row names: garbage nobody can reach, which :meth:`Retention.collect` (``ade gc``, and
every retention sweep) removes. The reverse order could leave a job whose output is half gone.

**Files disappear in one step.** A job directory or a prepared config is first renamed to a
hidden ``.deleting-<id>-…`` name (atomic), then removed; a crash in the middle of the removal
leaves a hidden directory the next collection removes whatever its age.

**Orphans are only taken when old.** A submission writes its job directory before its row, and
an upload its file before its row; so a file without a row younger than
:data:`ORPHAN_AGE_SECONDS` may be a write in flight and is left alone.

**Prepared configs are shared.** ``venvs/<config id>`` is the same folder for every workspace
that published the same content, so it goes only when no workspace holds the config and no
active job uses it. A publish in another workspace may be reusing it at that moment: the folder
is renamed away, the store asked again, and put back if a row appeared meanwhile; a publish
that finds it gone after recording its row prepares it again
(:meth:`ade.catalog.Catalog.publish_config`).

Every deletion is written to the workspace's log, ``${ADE_DATA_DIR}/events/<workspace>.ndjson``
(one JSON object per line: ``ts``, ``workspace_id``, ``type``, ``id``, ``by`` and the request
id when a request asked for it). Never a file name or content: ids only.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import trio

from ade.errors import Conflict, NotFound
from ade.ids import is_id
from ade.layout import JobLayout
from ade.models import ConfigVersion, Document, JobRecord
from ade.protocols import Store
from ade.serde import utcnow
from ade.settings import Settings
from ade.telemetry.logs import log_fields

__all__ = [
    "ORPHAN_AGE_SECONDS",
    "SWEEP_INTERVAL_SECONDS",
    "CollectReport",
    "Retention",
    "Sweeper",
    "data_dir_usage",
    "workspace_log_path",
]

logger = logging.getLogger("ade.retention")

# A file without a row younger than this may be a submission or an upload in flight.
ORPHAN_AGE_SECONDS = 600.0
# The retention sweep runs at start-up and then this often: retention is counted in days, so
# an hour late is nothing, and a sweep over a large history costs one indexed query per batch.
SWEEP_INTERVAL_SECONDS = 3600.0
# Jobs deleted per store query while sweeping (each one is still its own transaction).
SWEEP_BATCH = 200
_DELETING = ".deleting-"
_EVENTS_DIR = "events"


def workspace_log_path(settings: Settings, workspace_id: str) -> Path:
    return settings.data_dir / _EVENTS_DIR / f"{workspace_id}.ndjson"


@attrs.frozen
class CollectReport:
    """What a collection removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    jobs: tuple[str, ...] = ()  # finished jobs past retention (rows and directories)
    orphans: tuple[str, ...] = ()  # data-dir-relative paths of files no row names
    bytes: int = 0


# -- files (blocking; run in a worker thread) ---------------------------------------------------


def _make_writable(path: Path) -> None:
    # Job inputs and config snapshots are read-only by design; a non-root owner needs write
    # permission on a folder to empty it.
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            target = os.path.join(root, name)
            if not os.path.islink(target):
                os.chmod(target, 0o755)


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    os.chmod(path, 0o755)
    _make_writable(path)
    shutil.rmtree(path)


def _hide(path: Path) -> Path | None:
    """Rename ``path`` to a hidden ``.deleting-`` sibling; None if it is not there."""
    hidden = path.with_name(f"{_DELETING}{path.name}-{secrets.token_hex(4)}")
    try:
        os.rename(path, hidden)
    except FileNotFoundError:
        return None
    return hidden


def _remove_job_files(jobs_dir: Path, job_id: str) -> None:
    hidden = _hide(JobLayout.of(jobs_dir, job_id).root)
    if hidden is not None:
        _remove_tree(hidden)


def _usage(path: Path, seen: set[tuple[int, int]]) -> int:
    """Bytes on disk under ``path``; a hard-linked file (job inputs) counts once."""
    total = 0
    stack = [path]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            key = (info.st_dev, info.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += info.st_blocks * 512
    return total


def data_dir_usage(settings: Settings) -> dict[str, Any]:
    """Disk used by the data directory (bytes, hard links once) and its filesystem's room."""
    root = settings.data_dir
    used = _usage(root, set())
    fs = shutil.disk_usage(root)
    return {
        "path": str(root),
        "used_bytes": used,
        "fs_total_bytes": fs.total,
        "fs_free_bytes": fs.free,
    }


@attrs.frozen
class _Candidate:
    kind: str  # job, document, config, leftover (a .deleting-/.upload- remnant)
    id: str
    path: Path


def _old(path: os.DirEntry[str], cutoff: float) -> bool:
    try:
        return path.stat(follow_symlinks=False).st_mtime < cutoff
    except FileNotFoundError:
        return False


def _entries(folder: Path) -> Iterator[os.DirEntry[str]]:
    try:
        yield from os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return


def _scan_orphan_candidates(settings: Settings, now: float) -> list[_Candidate]:
    """Files that may belong to no row: every id-named entry old enough, and every leftover of
    an interrupted deletion or upload (the store then says which ids are still known)."""
    cutoff = now - ORPHAN_AGE_SECONDS
    found: list[_Candidate] = []
    for entry in _entries(settings.jobs_dir):
        path = Path(entry.path)
        if entry.name.startswith(_DELETING):
            found.append(_Candidate("leftover", entry.name, path))
        elif is_id(entry.name) and _old(entry, cutoff):
            found.append(_Candidate("job", entry.name, path))
    for entry in _entries(settings.venvs_dir):
        path = Path(entry.path)
        if entry.name.startswith(_DELETING):
            found.append(_Candidate("leftover", entry.name, path))
        elif is_id(entry.name) and _old(entry, cutoff):
            found.append(_Candidate("config", entry.name, path))
    for workspace in _entries(settings.documents_dir):
        if workspace.name.startswith(_DELETING):  # a deleted workspace's, half removed
            found.append(_Candidate("leftover", workspace.name, Path(workspace.path)))
            continue
        if not workspace.is_dir(follow_symlinks=False):
            continue
        for entry in _entries(Path(workspace.path)):
            path = Path(entry.path)
            if entry.name.startswith(".upload-") and _old(entry, cutoff):
                found.append(_Candidate("leftover", entry.name, path))
            elif is_id(entry.name) and _old(entry, cutoff):
                found.append(_Candidate("document", entry.name, path))
    return found


def _size(path: Path) -> int:
    return _usage(path, set()) if path.is_dir() else path.stat().st_blocks * 512


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        _remove_tree(path)
    else:
        path.unlink(missing_ok=True)


# -- the policy ---------------------------------------------------------------------------------


class Retention:
    """Deletions for the API, the sweep and ``ade gc``; ``by`` says who asked (``api``,
    ``retention``, ``gc``) in the workspace log."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def delete_job(
        self, workspace_id: str, job_id: str, *, by: str = "api", request_id: str | None = None
    ) -> JobRecord:
        job = await self.store.get_job(job_id) if is_id(job_id) else None
        if job is None or job.workspace_id != workspace_id:
            raise NotFound(
                f"job {job_id} not found in workspace {workspace_id}", {"job_id": job_id}
            )
        deleted = await self.store.delete_job(job_id)
        if deleted is None:  # deleted by someone else a moment ago
            raise NotFound(
                f"job {job_id} not found in workspace {workspace_id}", {"job_id": job_id}
            )
        await trio.to_thread.run_sync(_remove_job_files, self.settings.jobs_dir, job_id)
        await self._record(workspace_id, "job_deleted", job_id, by, request_id)
        return deleted

    async def delete_document(
        self, workspace_id: str, document_id: str, *, request_id: str | None = None
    ) -> Document:
        document = (
            await self.store.delete_document(workspace_id, document_id)
            if is_id(document_id)
            else None
        )
        if document is None:
            raise NotFound(
                f"document {document_id} not found in workspace {workspace_id}",
                {"document_id": document_id},
            )
        path = self.settings.documents_dir / workspace_id / document.id
        await trio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))
        await self._record(workspace_id, "document_deleted", document.id, "api", request_id)
        return document

    async def delete_config(
        self, workspace_id: str, config_id: str, *, request_id: str | None = None
    ) -> ConfigVersion:
        config = (
            await self.store.delete_config(workspace_id, config_id) if is_id(config_id) else None
        )
        if config is None:
            raise NotFound(
                f"config version {config_id} not found in workspace {workspace_id}",
                {"config_version_id": config_id},
            )
        await self._drop_prepared(config.id)
        await self._record(workspace_id, "config_deleted", config.id, "api", request_id)
        return config

    async def delete_workspace_files(
        self, workspace_id: str, job_ids: list[str], config_ids: list[str]
    ) -> None:
        """The files of a workspace whose rows are gone (:meth:`ade.protocols.AccessStore.
        delete_workspace`): its documents, its jobs' directories and the prepared configs no
        other workspace holds, each hidden first and removed as a job deletion removes them."""

        def remove_documents_and_jobs() -> None:
            documents = _hide(self.settings.documents_dir / workspace_id)
            if documents is not None:
                _remove_tree(documents)
            for job_id in job_ids:
                _remove_job_files(self.settings.jobs_dir, job_id)

        await trio.to_thread.run_sync(remove_documents_and_jobs)
        for config_id in config_ids:
            await self._drop_prepared(config_id)

    async def _drop_prepared(self, config_id: str) -> bool:
        """Remove ``venvs/<config_id>`` unless a workspace or an active job still needs it
        (see the module docstring for the race with a publish in another workspace)."""
        if await self.store.config_in_use(config_id):
            return False
        final = self.settings.venvs_dir / config_id
        hidden = await trio.to_thread.run_sync(_hide, final)
        if hidden is None:
            return False
        if await self.store.config_in_use(config_id):
            try:
                await trio.to_thread.run_sync(os.rename, hidden, final)
                return False
            except OSError:
                pass  # a publish prepared it afresh meanwhile: that copy serves; drop ours
        await trio.to_thread.run_sync(_remove_tree, hidden)
        return True

    async def _record(
        self, workspace_id: str, type_: str, id_: str, by: str, request_id: str | None
    ) -> None:
        entry: dict[str, Any] = {
            "ts": utcnow().isoformat(),
            "workspace_id": workspace_id,
            "type": type_,
            "id": id_,
            "by": by,
        }
        if request_id is not None:
            entry["request_id"] = request_id
        path = workspace_log_path(self.settings, workspace_id)
        line = json.dumps(entry, separators=(",", ":")) + "\n"

        def append() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # One write of a short line with O_APPEND: lines from several nodes never interleave.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

        try:
            await trio.to_thread.run_sync(append)
        except OSError:
            logger.exception("could not append to %s", path)
        log_fields(
            logger,
            logging.INFO,
            f"{type_.replace('_', ' ')}",
            workspace_id=workspace_id,
            id=id_,
            by=by,
            request_id=request_id,
        )

    # -- collection: expired jobs and orphans ----------------------------------------------------

    async def collect(
        self, *, older_than_days: int | None, dry_run: bool, by: str = "gc"
    ) -> CollectReport:
        """Delete finished jobs older than ``older_than_days`` (None: none by age) and every
        orphaned file; with ``dry_run`` only report them."""
        jobs: list[str] = []
        freed = 0
        if older_than_days is not None:
            cutoff = utcnow() - timedelta(days=older_than_days)
            jobs, freed = await self._expired(cutoff, dry_run=dry_run, by=by)
        orphans, orphan_bytes = await self._orphans(dry_run=dry_run)
        return CollectReport(dry_run, tuple(jobs), tuple(orphans), freed + orphan_bytes)

    async def _expired(self, cutoff: datetime, *, dry_run: bool, by: str) -> tuple[list[str], int]:
        done: list[str] = []
        freed = 0
        # Jobs looked at that are still in the store (all of them in a dry run): the next
        # query asks for that many more rows and skips them.
        kept: set[str] = set()
        while True:
            rows = await self.store.finished_jobs_before(cutoff, limit=SWEEP_BATCH + len(kept))
            batch = [job for job in rows if job.id not in kept]
            if not batch:
                return done, freed
            for job in batch:
                root = JobLayout.of(self.settings.jobs_dir, job.id).root
                size = await trio.to_thread.run_sync(_size, root) if root.exists() else 0
                if dry_run:
                    kept.add(job.id)
                else:
                    try:
                        await self.delete_job(job.workspace_id, job.id, by=by)
                    except (NotFound, Conflict):
                        kept.add(job.id)  # deleted or changed meanwhile
                        continue
                done.append(job.id)
                freed += size

    async def _orphans(self, *, dry_run: bool) -> tuple[list[str], int]:
        candidates = await trio.to_thread.run_sync(
            _scan_orphan_candidates, self.settings, time.time()
        )
        known: dict[str, set[str]] = {}
        for kind in ("job", "document", "config"):
            ids = [c.id for c in candidates if c.kind == kind]
            known[kind] = await self.store.existing_ids(kind, ids) if ids else set()
        removed: list[str] = []
        freed = 0
        for candidate in candidates:
            if candidate.kind != "leftover" and candidate.id in known[candidate.kind]:
                continue
            if candidate.kind == "config" and await self.store.config_in_use(candidate.id):
                continue
            try:
                size = await trio.to_thread.run_sync(_size, candidate.path)
            except FileNotFoundError:
                continue
            if not dry_run:
                if candidate.kind == "config":
                    if not await self._drop_prepared(candidate.id):
                        continue
                else:
                    await trio.to_thread.run_sync(_remove, candidate.path)
            removed.append(str(candidate.path.relative_to(self.settings.data_dir)))
            freed += size
        return sorted(removed), freed


@attrs.frozen
class SweepStatistics:
    runs: int
    deleted_jobs: int
    removed_orphans: int
    last_run_at: datetime | None


class Sweeper:
    """The periodic retention sweep (``ADE_RETENTION_DAYS``), a task of the runtime's nursery:
    at start-up and then every :data:`SWEEP_INTERVAL_SECONDS`."""

    def __init__(self, retention: Retention, days: int) -> None:
        self.retention = retention
        self.days = days
        self._runs = 0
        self._deleted = 0
        self._orphans = 0
        self._last: datetime | None = None

    def statistics(self) -> SweepStatistics:
        return SweepStatistics(self._runs, self._deleted, self._orphans, self._last)

    async def sweep_once(self) -> CollectReport:
        report = await self.retention.collect(
            older_than_days=self.days, dry_run=False, by="retention"
        )
        self._runs += 1
        self._deleted += len(report.jobs)
        self._orphans += len(report.orphans)
        self._last = utcnow()
        log_fields(
            logger,
            logging.INFO,
            "retention sweep",
            deleted_jobs=len(report.jobs),
            removed_orphans=len(report.orphans),
            freed_bytes=report.bytes,
            retention_days=self.days,
        )
        return report

    async def run(self, interval: float = SWEEP_INTERVAL_SECONDS) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:
                # A store hiccup must not end retention for the life of the process.
                logger.exception("the retention sweep failed; trying again in %.0f s", interval)
            await trio.sleep(interval)
