"""The minimal two-field config package tests build on (name, amount), as source text.

Shared by the runtime, sandbox and API test helpers so a change to the package format is made
once. Each helper adds its own modules (reporting hooks, attacks, slow detectors) on top.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DATA_PY", "HEADER_PY", "column_py", "manifest"]


def manifest(title: str = "Test config", *, name_required: bool = False) -> dict[str, Any]:
    name: dict[str, Any] = {"label": "Name", "synonyms": ["full name"]}
    if name_required:
        name["required"] = True
    return {
        "schema": "ade.manifest/v1",
        "title": title,
        "version": "1.0.0",
        "columns": {
            "order": ["name", "amount"],
            "fields": {"name": name, "amount": {"label": "Amount", "type": "number"}},
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
    """A column module whose only detector matches the header text ``label`` exactly."""
    return (
        "\ndef detect_by_header(header):\n"
        f"    return 1.0 if header and str(header).strip().lower() == {label.lower()!r} else 0.0\n"
    )
