"""Helpers for the EXEC tests (store, prepare, jobdir, supervisor, limits): small config packages
written into tmp dirs, documents in the store's layout, a prepared job directory."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

MANIFEST = {
    "schema": "ade.manifest/v1",
    "title": "Test config",
    "version": "1.0.0",
    "columns": {
        "order": ["name", "amount"],
        "fields": {
            "name": {"label": "Name", "synonyms": ["full name"]},
            "amount": {"label": "Amount", "type": "number"},
        },
    },
}

HEADER_PY = """
def detect_header(values, non_empty):
    texts = [str(v).strip().lower() for v in values if isinstance(v, str)]
    return {"header": 1.0} if non_empty and len(texts) == non_empty else {}
"""

DATA_PY = """
def detect_data(values, non_empty):
    return {"data": 0.5} if non_empty else {}
"""


def column_py(label: str) -> str:
    return textwrap.dedent(
        f"""
        def detect_by_header(header):
            return 1.0 if header and str(header).strip().lower() == {label.lower()!r} else 0.0
        """
    )


def write_package(
    root: Path,
    *,
    name_module_extra: str = "",
    manifest_changes: dict | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """A valid package at ``root``. ``name_module_extra`` is appended to columns/name.py, which
    is where tests put hostile code (it runs when the engine imports the package)."""
    manifest = dict(MANIFEST)
    manifest.update(manifest_changes or {})
    files = {
        "manifest.json": json.dumps(manifest, indent=2),
        "row_types/header.py": HEADER_PY,
        "row_types/data.py": DATA_PY,
        "columns/name.py": column_py("Name") + textwrap.dedent(name_module_extra),
        "columns/amount.py": column_py("Amount"),
    }
    files.update(extra_files or {})
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
