"""The one cattrs converter used at the edges: JSON files, API bodies, the worker's pipe."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import cattrs
from cattrs.preconf.json import make_converter

__all__ = ["converter", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _make() -> cattrs.Converter:
    conv = make_converter(forbid_extra_keys=True)
    # ISO-8601 with an explicit offset, the way clients and operators read it.
    conv.register_unstructure_hook(datetime, lambda value: value.isoformat())

    def _structure_datetime(value: Any, _: type) -> datetime:
        if isinstance(value, datetime):
            return value
        return datetime.fromisoformat(value)

    conv.register_structure_hook(datetime, _structure_datetime)
    return conv


converter: cattrs.Converter = _make()
