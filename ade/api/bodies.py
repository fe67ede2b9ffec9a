"""Request bodies: attrs classes structured strictly, errors reported field by field.

Why a strict copy of the shared converter: cattrs' defaults coerce (``5`` becomes ``"5"``,
``"false"`` becomes ``True``, a string is a sequence of one-letter ids). At the API edge a value of
the wrong type is a client mistake to report, not a value to guess at.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import attrs
import cattrs

from ade.api.errors import BadRequest, FieldProblem, UnsupportedMediaType
from ade.ids import ID_PATTERN, is_id, shown_id
from ade.serde import converter

__all__ = [
    "ID_PATTERN",
    "WORKSPACE_PATTERN",
    "SubmitJob",
    "check_id",
    "check_workspace_id",
    "parse_count",
    "parse_json_body",
    "shown_id",
    "structure_body",
]

T = TypeVar("T")

# Workspace ids appear in paths on disk (documents/<workspace>/) and in URLs.
WORKSPACE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@attrs.frozen
class SubmitJob:
    """``POST /jobs``."""

    config_version_id: str
    document_ids: tuple[str, ...]
    runtime_network_access: bool = False


def _strict_converter() -> cattrs.Converter:
    conv = converter.copy(detailed_validation=True)

    def _str(value: Any, _: type) -> str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {_json_type(value)}")
        return value

    def _bool(value: Any, _: type) -> bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {_json_type(value)}")
        return value

    conv.register_structure_hook(str, _str)
    conv.register_structure_hook(bool, _bool)
    # The list check first, then the per-item strict str hook.
    item_hook = conv.get_structure_hook(tuple[str, ...])
    conv.register_structure_hook_func(
        lambda t: t == tuple[str, ...],
        lambda value, t: _checked_list(value, t, item_hook),
    )
    return conv


def _checked_list(value: Any, t: type, item_hook: Any) -> Any:
    if not isinstance(value, list):
        raise TypeError(f"expected a list of strings, got {_json_type(value)}")
    return item_hook(value, t)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_strict = _strict_converter()


def _problems(exc: BaseException) -> list[FieldProblem]:
    """Flatten a cattrs validation error into one problem per field (``a.b[2]`` paths)."""
    out: list[FieldProblem] = []

    def walk(error: BaseException, path: str) -> None:
        if isinstance(error, cattrs.ForbiddenExtraKeysError):
            for key in sorted(error.extra_fields):
                out.append(FieldProblem(_join(path, key), "unknown field"))
            return
        if isinstance(error, cattrs.BaseValidationError):
            with_notes, without = error.group_exceptions()
            for inner, note in with_notes:
                if isinstance(note, cattrs.AttributeValidationNote):
                    walk(inner, _join(path, note.name))
                elif isinstance(note, cattrs.IterableValidationNote):
                    walk(inner, f"{path}[{note.index}]")
                else:
                    walk(inner, path)
            for inner in without:
                walk(inner, path)
            return
        if isinstance(error, KeyError):
            out.append(FieldProblem(path or "(body)", "required field missing"))
            return
        message = str(error) if isinstance(error, TypeError | ValueError) else "invalid value"
        out.append(FieldProblem(path or "(body)", message))

    walk(exc, "")
    return out


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def parse_json_body(raw: bytes, content_type: str | None) -> Any:
    """Decode a JSON request body; 415 for another media type, 400 for broken JSON."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType(
            f"expected Content-Type application/json, got {media or 'none'}",
            {"expected": "application/json", "got": media or None},
        )
    try:
        return json.loads(raw)
    except RecursionError:
        raise BadRequest(
            "the request body is nested too deeply", [FieldProblem("(body)", "nested too deeply")]
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if hasattr(exc, "lineno") else ""
        raise BadRequest(
            f"the request body is not valid JSON{where}", [FieldProblem("(body)", "invalid JSON")]
        ) from None
    except ValueError:
        # Valid JSON that json.loads still refuses: an integer beyond Python's digit limit.
        raise BadRequest(
            "the request body holds a number too long to read",
            [FieldProblem("(body)", "a number with more than 4300 digits")],
        ) from None


def structure_body(data: Any, cls: type[T]) -> T:
    """Structure ``data`` into ``cls`` strictly; :class:`BadRequest` lists every wrong field."""
    if not isinstance(data, dict):
        raise BadRequest(
            "the request body must be a JSON object",
            [FieldProblem("(body)", f"expected an object, got {_json_type(data)}")],
        )
    try:
        return _strict.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        problems = _problems(exc)
        fields = ", ".join(p["field"] for p in problems)
        raise BadRequest(f"invalid request body: {fields}", problems) from None


def check_workspace_id(workspace_id: str) -> str:
    if not WORKSPACE_PATTERN.match(workspace_id):
        raise BadRequest(
            "invalid workspace id",
            [
                FieldProblem(
                    "workspace_id",
                    "1-63 characters: lowercase letters, digits, '-' and '_', "
                    "starting with a letter or digit",
                )
            ],
        )
    return workspace_id


def parse_count(raw: str) -> int | None:
    """A whole number >= 0 from a query parameter, or None. Not ``raw.isdigit()`` alone: "²"
    passes it and then fails int(), and so does a 5000-digit number (Python's int-from-string
    limit) -- a ValueError there was a 500 for a client's typo."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


# Ids are checked and quoted by the rules in ade.ids (one place for the runtime and the API).
check_id = is_id
