"""Helpers for the EXEC tests (store, prepare, jobdir, supervisor, limits): small config packages
written into tmp dirs, documents in the store's layout, a prepared job directory."""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from ade.configs.prepare import prepare_config
from ade.ids import new_id
from ade.models import Document, JobRecord, JobStatus
from ade.settings import Settings
from support.configs import DATA_PY, HEADER_PY, column_py
from support.configs import manifest as manifest_for_tests

# Config code that reports to the test through the worker's events fd (it knows the number from
# its own command line). The supervisor forwards well-formed lines to on_event.
REPORT_PY = """
import json as _json, os as _os, sys as _sys

def _report(kind, **detail):
    fd = int(_sys.argv[_sys.argv.index("--events-fd") + 1])
    _os.write(fd, (_json.dumps({"type": kind, "detail": detail}) + "\\n").encode())
"""


def write_package(
    root: Path,
    *,
    name_module_extra: str = "",
    manifest_changes: dict | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """A valid package at ``root``. ``name_module_extra`` is appended to columns/name.py, which
    is where tests put hostile code (it runs when the engine imports the package)."""
    manifest = manifest_for_tests()
    manifest.update(manifest_changes or {})
    files = {
        "manifest.json": json.dumps(manifest, indent=2),
        "row_types/header.py": HEADER_PY,
        "row_types/data.py": DATA_PY,
        "columns/name.py": column_py("Name") + REPORT_PY + textwrap.dedent(name_module_extra),
        "columns/amount.py": column_py("Amount"),
    }
    files.update(extra_files or {})
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# -- jobs for the supervisor tests -------------------------------------------------------------

T0 = datetime(2026, 1, 2, tzinfo=UTC)


def build_wheel(directory: Path, name: str, init_source: str) -> Path:
    """A minimal pure-Python wheel on disk (pip installs it without any index access)."""
    import zipfile

    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{name}/__init__.py", init_source)
        zf.writestr(
            f"{name}-1.0.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        )
        zf.writestr(
            f"{name}-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{name}-1.0.dist-info/RECORD", "")
    return wheel


def write_workbook(path: Path, rows: list[list[object]]) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path.read_bytes()


SAMPLE_ROWS: list[list[object]] = [
    ["Name", "Amount"],
    ["Ada", 10],
    ["Grace", 20.5],
    ["Linus", 3],
]


def store_document(settings: Settings, workspace: str, filename: str, data: bytes) -> Document:
    doc = Document(
        id=new_id(),
        workspace_id=workspace,
        filename=filename,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=T0,
    )
    path = settings.documents_dir / workspace / doc.id
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return doc


def make_job_dir(
    settings: Settings,
    package: Path,
    *,
    rows: list[list[object]] | None = None,
    network: bool = False,
) -> Path:
    """Prepare ``package``, store one workbook and build the job directory, as the runtime does."""
    from ade.runtime.jobdir import create_job_dir

    config_id = prepare_config(package, settings.venvs_dir).config_id
    scratch = settings.data_dir / "scratch.xlsx"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    data = write_workbook(scratch, rows or SAMPLE_ROWS)
    doc = store_document(settings, "ws", "input.xlsx", data)
    return create_job_dir(settings, queued_job(config_id, doc, network=network), [doc])[0]


def queued_job(config_id: str, document: Document, *, network: bool = False) -> JobRecord:
    """A new queued job of ``document`` with ``config_id`` in the document's workspace."""
    return JobRecord(
        id=new_id(),
        workspace_id=document.workspace_id,
        status=JobStatus.QUEUED,
        config_version_id=config_id,
        document_ids=(document.id,),
        runtime_network_access=network,
        attempt=1,
        created_at=T0,
    )


def processes_mentioning(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``marker``. Works across PID
    namespaces: /proc here shows host pids and every process's real command line."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


class EventLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    async def __call__(self, event_type: str, detail: dict) -> None:
        self.events.append((event_type, detail))

    def of(self, event_type: str) -> list[dict]:
        return [d for t, d in self.events if t == event_type]
