"""Helpers for the API tests: config packages and workbooks as bytes, a server in the test's
nursery, and small wait loops."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import attrs
import trio

import support
from ade.api.server import run_service
from ade.settings import Settings
from support.configs import DATA_PY, HEADER_PY, column_py
from support.configs import manifest as manifest_for_tests


def package_files(
    *, sleep_seconds: float = 0.0, title: str = "Test config", fail: bool = False
) -> dict[str, str]:
    """A valid package. ``sleep_seconds`` makes the config slow: columns/name.py sleeps when the
    engine imports it, inside the job's subprocess. ``fail`` makes a column detector raise."""
    manifest = manifest_for_tests(title, name_required=True)
    name_py = column_py("Name")
    if sleep_seconds:
        name_py = f"import time\ntime.sleep({sleep_seconds})\n" + name_py
    amount_py = column_py("Amount")
    if fail:
        amount_py = "def detect_by_header(header):\n    raise RuntimeError('boom')\n"
    return {
        "manifest.json": json.dumps(manifest, indent=2),
        "row_types/header.py": HEADER_PY,
        "row_types/data.py": DATA_PY,
        "columns/name.py": name_py,
        "columns/amount.py": amount_py,
    }


def zip_bytes(files: dict[str, str | bytes], *, prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(prefix + name, content)
    return buffer.getvalue()


def package_zip(**kwargs: Any) -> bytes:
    return zip_bytes(package_files(**kwargs))  # type: ignore[arg-type]


ROWS: list[list[object]] = [
    ["Quarterly members"],
    [],
    ["Name", "Amount"],
    ["Ada", 10],
    ["Grace", 20.5],
    ["Linus", 3],
]


def workbook_bytes(rows: list[list[object]] = ROWS) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def read_cells(data: bytes) -> list[list[object]]:
    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    try:
        sheet = workbook.worksheets[0]
        return [list(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """:func:`support.make_settings` with what a served API needs: two workers, room in the
    queue, a roomier job timeout."""
    values: dict[str, Any] = {
        "max_concurrency": 2,
        "queue_size": 10,
        "shutdown_grace_seconds": 3.0,
        "job_timeout_seconds": 60.0,
    }
    values.update(overrides)
    return support.make_settings(data_dir, **values)


@attrs.define
class Service:
    url: str
    settings: Settings
    stop: trio.Event

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1/workspaces/default"


async def start_service(nursery: trio.Nursery, settings: Settings) -> Service:
    stop = trio.Event()
    url = await nursery.start(
        lambda task_status: run_service(
            settings, shutdown_trigger=stop.wait, task_status=task_status
        )
    )
    return Service(url, settings, stop)


async def wait_for_status(
    client: Any, url: str, statuses: set[str], timeout: float = 30.0
) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            job = (await client.get(url)).json()
            if job["status"] in statuses:
                return job  # type: ignore[no-any-return]
            await trio.sleep(0.05)
