"""Build a job's directory, all at once or not at all.

The layout (:mod:`ade.layout`): ``inputs/``, ``run-request.json`` and the ``.venv`` link are made
here; ``artifact.json``, ``normalized.xlsx`` and ``events.ndjson`` come later. The run request is
written once, for the worker subprocess and for the record, and handed back in memory so the
supervisor does not read it again.

Everything is built under a hidden temporary name in ``jobs/`` and renamed into place in one
``rename(2)``: a reader either sees no job directory or a complete one, and a failure (missing
document, full disk) leaves nothing behind.

Inside ``inputs/`` a file is named after its position and document id, plus a file-type suffix
from a short allow-list. The uploaded filename is data (it travels in the request as a display
name), never a path: ``../../etc/passwd`` or ``a/b.xlsx`` as a filename cannot escape or collide.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ade.configs.prepare import site_packages_dir, snapshot_dir
from ade.errors import Conflict, NotFound
from ade.layout import INPUTS_DIR, VENV_LINK, JobLayout, is_safe_id
from ade.models import Document, JobRecord
from ade.sandbox import build_spec
from ade.settings import Settings
from ade.worker.protocol import RequestInput, RunRequest, dump_request

__all__ = [
    "create_job_dir",
    "input_file_name",
    "remove_job_dir",
    "remove_unfinished_builds",
]

# Suffixes the engine may use to pick a reader; anything else gets none.
_KNOWN_SUFFIXES = frozenset(
    {".xlsx", ".xlsm", ".xltx", ".xltm", ".xls", ".xlsb", ".ods", ".csv", ".tsv", ".txt"}
)
# A job directory being built; never a job id (ids cannot start with a dot).
_BUILDING_PREFIX = ".creating-"


def input_file_name(position: int, document: Document) -> str:
    """``001-<document id>.xlsx``: position keeps the job's document order (and allows the same
    document twice); the suffix is kept only when it is a known spreadsheet type."""
    suffix = os.path.splitext(document.filename)[1].lower()
    if suffix not in _KNOWN_SUFFIXES:
        suffix = ""
    return f"{position:03d}-{document.id}{suffix}"


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        # Another filesystem, or links not allowed: a copy is slower but equivalent.
        shutil.copyfile(source, target)
    # Readable by the job's (possibly dropped) uid, writable by nobody. With a hard link this is
    # also the stored document's mode: stored documents are immutable anyway.
    target.chmod(0o444)


def create_job_dir(
    settings: Settings, job: JobRecord, documents: Sequence[Document]
) -> tuple[Path, RunRequest]:
    """Create ``jobs/<job.id>/`` for ``job``; return its path and the run request written in it.

    ``documents`` are the records of ``job.document_ids`` (any order; the job's order is kept).
    Raises :class:`NotFound` when a document's content or the prepared config is missing,
    :class:`Conflict` when the directory already exists. Nothing is left behind on failure.
    Blocking: call through ``trio.to_thread.run_sync`` from async code.
    """
    final = JobLayout.of(settings.jobs_dir, job.id).root
    by_id = {d.id: d for d in documents}
    for document_id in job.document_ids:
        document = by_id.get(document_id)
        if document is None or document.workspace_id != job.workspace_id:
            raise NotFound(f"document {document_id} is not in workspace {job.workspace_id}")
        if not is_safe_id(document_id):
            raise ValueError(f"document id {document_id!r} is not a safe path component")
    if not job.document_ids:
        raise ValueError("a job needs at least one document")
    config_dir = settings.venvs_dir / job.config_version_id
    if (
        not is_safe_id(job.config_version_id)
        or not snapshot_dir(settings.venvs_dir, job.config_version_id).is_dir()
    ):
        raise NotFound(f"config version {job.config_version_id} has not been prepared")
    if final.exists():
        raise Conflict(f"job directory for {job.id} already exists")

    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f"{_BUILDING_PREFIX}{job.id}-", dir=settings.jobs_dir))
    try:
        # mkdtemp's 0o700 would lock out a worker that runs under a dropped uid.
        building.chmod(0o755)
        staged = JobLayout(building)
        inputs_dir = staged.inputs
        inputs_dir.mkdir()
        inputs: list[RequestInput] = []
        for position, document_id in enumerate(job.document_ids, start=1):
            document = by_id[document_id]
            source = settings.documents_dir / job.workspace_id / document_id
            if not source.is_file():
                raise NotFound(f"the stored content of document {document_id} is missing")
            name = input_file_name(position, document)
            _link_or_copy(source, inputs_dir / name)
            inputs.append(RequestInput(f"{INPUTS_DIR}/{name}", document.filename, document_id))
        inputs_dir.chmod(0o555)

        os.symlink(f"../../{settings.venvs_dir.name}/{job.config_version_id}/", staged.venv_link)
        request = RunRequest(
            job_id=job.id,
            workspace_id=job.workspace_id,
            attempt=job.attempt,
            config_id=job.config_version_id,
            inputs=tuple(inputs),
            runtime_network_access=job.runtime_network_access,
            # Built by the sandbox (trusted, here in the service): the job reads its directory
            # and its config, writes only under tmp/.
            sandbox=build_spec(settings, final, config_dir, job.runtime_network_access),
            site_packages=f"{VENV_LINK}/site-packages"
            if site_packages_dir(settings.venvs_dir, job.config_version_id).is_dir()
            else None,
        )
        request_path = staged.request
        with open(request_path, "xb") as out:
            out.write(dump_request(request))
            out.flush()
            os.fsync(out.fileno())
        request_path.chmod(0o444)
        try:
            os.rename(building, final)
        except OSError as exc:
            if final.exists():
                raise Conflict(f"job directory for {job.id} already exists") from None
            raise exc
        _fsync_dir(settings.jobs_dir)
    except BaseException:
        remove_job_dir(building)
        raise
    return final, request


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_job_dir(path: Path) -> None:
    """Remove a job directory (or one being built); ``inputs/`` is read-only by design, so
    directories are made writable first. A missing directory is fine."""
    if not path.exists():
        return
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            target = os.path.join(root, name)
            if not os.path.islink(target):
                os.chmod(target, 0o755)
    shutil.rmtree(path)


def remove_unfinished_builds(
    jobs_dir: Path, *, older_than_seconds: float | None = None
) -> list[str]:
    """Remove the hidden ``.creating-*`` directories a service that died in the middle of
    :func:`create_job_dir` left in ``jobs_dir``; returns their names. Only safe while no
    submission can be in flight, i.e. at start-up under the data directory's lock — or, in a
    shared data directory, for builds untouched for ``older_than_seconds``."""
    removed: list[str] = []
    cutoff = None if older_than_seconds is None else time.time() - older_than_seconds
    try:
        entries = list(os.scandir(jobs_dir))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if entry.name.startswith(_BUILDING_PREFIX) and entry.is_dir(follow_symlinks=False):
            if cutoff is not None and entry.stat(follow_symlinks=False).st_mtime > cutoff:
                continue
            remove_job_dir(Path(entry.path))
            removed.append(entry.name)
    return sorted(removed)
