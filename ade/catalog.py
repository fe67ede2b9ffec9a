"""The catalog: config versions and documents of every workspace, published and stored in one
place. The HTTP routes (``/configs``, ``/documents``) and ``ade serve`` (the bundled sample) both
call it, so there is one way a config package becomes a version and a file becomes a document.

Content first, row second: a document's bytes are in place before its row exists, and a row that
cannot be written takes the bytes with it, so a row never points at missing content and a failed
upload leaves nothing behind. The store refuses the row of a workspace deleted meanwhile
(:mod:`ade.store.workspace_guard`); a config version refused so leaves its prepared folder
(``venvs/<id>``, shared by content) to ``ade gc``, which removes prepared configs no row holds.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

import trio

from ade.configs import load_package
from ade.configs.archive import MAX_PACKAGE_FILES, MAX_PACKAGE_UNPACKED_BYTES, check_zip
from ade.configs.prepare import BuildRecord, prepare_config, snapshot_dir
from ade.errors import Conflict, NotFound
from ade.ids import new_id
from ade.models import ConfigVersion, Document
from ade.protocols import CatalogStore
from ade.serde import utcnow
from ade.settings import Settings

__all__ = ["Catalog"]


def _prepare(package: Path, venvs_dir: Path) -> tuple[BuildRecord, str, str, bool]:
    if not package.is_dir():  # a folder is only ever the bundled sample (ade serve)
        check_zip(package)
    record = prepare_config(
        package,
        venvs_dir,
        max_unpacked_bytes=MAX_PACKAGE_UNPACKED_BYTES,
        max_files=MAX_PACKAGE_FILES,
    )
    loaded = load_package(snapshot_dir(venvs_dir, record.config_id))
    return record, loaded.title, loaded.version, loaded.engine.runtime_network_access


def _copy_in(source: Path, folder: Path) -> tuple[Path, int, str]:
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".upload-", dir=folder)
    temp = Path(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, size, digest.hexdigest()


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
            raise


class Catalog:
    """Publishes config packages and stores documents for ``store`` under ``settings``'s data
    directory (``venvs/`` and ``documents/<workspace>/``)."""

    def __init__(self, store: CatalogStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def documents_folder(self, workspace_id: str) -> Path:
        """Where the workspace's document contents live (uploads are received into it)."""
        return self.settings.documents_dir / workspace_id

    async def publish_config(
        self,
        workspace_id: str,
        package: Path,
        *,
        limiter: trio.CapacityLimiter | None = None,
    ) -> tuple[ConfigVersion, bool]:
        """Validate and prepare the package (.zip, or a folder) and record it in
        ``workspace_id``.

        Returns (config version, created). Publishing identical content again returns the
        existing version (``created`` False): prepare is idempotent by content hash. Raises
        :class:`ade.errors.PackageInvalid` listing each problem.
        """
        record, title, version, network = await trio.to_thread.run_sync(
            _prepare, package, self.settings.venvs_dir, limiter=limiter
        )
        existing = await self.store.get_config(workspace_id, record.config_id)
        if existing is not None:
            return existing, False
        config = ConfigVersion(
            id=record.config_id,
            workspace_id=workspace_id,
            title=title,
            version=version,
            content_hash=record.content_hash,
            created_at=utcnow(),
            runtime_network_access=network,
        )
        try:
            await self.store.insert_config(config)
        except Conflict:
            # A concurrent publish of the same content won; its row is the version.
            winner = await self.store.get_config(workspace_id, record.config_id)
            if winner is None:
                raise
            return winner, False
        if not snapshot_dir(self.settings.venvs_dir, config.id).is_dir():
            # A deletion in another workspace removed the prepared files we reused just
            # before our row existed (ade.retention); now that the row holds them, prepare
            # again (idempotent by content).
            await trio.to_thread.run_sync(
                _prepare, package, self.settings.venvs_dir, limiter=limiter
            )
        return config, True

    async def add_document(
        self, workspace_id: str, content: Path, filename: str, size: int, sha256: str
    ) -> Document:
        """Record ``content`` (a file already inside :meth:`documents_folder`, e.g. a received
        upload) as a new document named ``filename``; the file is moved into place."""
        document = Document(
            id=new_id(),
            workspace_id=workspace_id,
            filename=filename,
            size=size,
            sha256=sha256,
            created_at=utcnow(),
        )
        final = self.documents_folder(workspace_id) / document.id
        try:
            await trio.to_thread.run_sync(os.replace, content, final)
            await self.store.insert_document(document)
        except BaseException as exc:
            content.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            if isinstance(exc, NotFound):
                # The workspace was deleted while the upload came in (the store refuses a row
                # in it): the folder the upload was received into goes too, unless another
                # upload is still in it.
                _remove_if_empty(final.parent)
            raise
        return document

    async def add_local_document(self, workspace_id: str, source: Path, filename: str) -> Document:
        """Copy a file from this machine in as a new document (``ade serve``'s sample)."""
        temp, size, sha256 = await trio.to_thread.run_sync(
            _copy_in, source, self.documents_folder(workspace_id)
        )
        return await self.add_document(workspace_id, temp, filename, size, sha256)
