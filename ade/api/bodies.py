"""Request bodies: read under a size cap, structured strictly, errors reported field by field.

Why a strict copy of the shared converter: cattrs' defaults coerce (``5`` becomes ``"5"``,
``"false"`` becomes ``True``, a string is a sequence of one-letter ids). At the API edge a value of
the wrong type is a client mistake to report, not a value to guess at.

Bounded work: a JSON body is at most ``ADE_MAX_JSON_KB`` (a declared larger one is refused before
a byte is read), every list and string field declares its :class:`Bounds` (the OpenAPI document
shows the same numbers), sizes are checked before any per-element work, the remaining checks are
linear, and a 400 lists at most :data:`ade.api.errors.MAX_LISTED_PROBLEMS` problems plus a count.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import attrs
import cattrs

from ade.api.errors import (
    MAX_LISTED_PROBLEMS,
    BadRequest,
    FieldProblem,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from ade.ids import ID_PATTERN, is_id, shown_id
from ade.runtime.admission import MAX_DOCUMENTS_PER_JOB
from ade.serde import converter

__all__ = [
    "ID_PATTERN",
    "MAX_DOCUMENTS_PER_JOB",
    "MAX_ID_CHARS",
    "WORKSPACE_PATTERN",
    "Bounds",
    "SubmitJob",
    "bounds_of",
    "check_id",
    "check_workspace_id",
    "invalid_body",
    "parse_count",
    "parse_json_body",
    "read_json_body",
    "shown_id",
    "structure_body",
]

T = TypeVar("T")

# Workspace ids appear in paths on disk (documents/<workspace>/) and in URLs.
WORKSPACE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Every id ADE issues fits ade.ids.ID_PATTERN (at most 128 characters).
MAX_ID_CHARS = 128
_BOUNDS = "ade.bounds"


@attrs.frozen
class Bounds:
    """The documented limits of one body field (a string, or a list of strings)."""

    min_length: int | None = None  # of the string, or of each string in the list
    max_length: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    # min_items and unique are documented here and checked by admission
    # (ade.runtime.admission.shape_problems), after an Idempotency-Key replay is decided.
    unique: bool = False
    # How the list's elements are named in messages ("at most 100 documents per job",
    # "listed twice; each document once").
    items_name: str = "items"
    item_name: str = "item"

    def metadata(self) -> dict[str, Bounds]:
        return {_BOUNDS: self}


def bounds_of(field: attrs.Attribute[Any]) -> Bounds | None:
    found: Bounds | None = field.metadata.get(_BOUNDS)
    return found


_ID = Bounds(min_length=1, max_length=MAX_ID_CHARS)


@attrs.frozen
class SubmitJob:
    """``POST /jobs``."""

    config_version_id: str = attrs.field(metadata=_ID.metadata())
    document_ids: tuple[str, ...] = attrs.field(
        metadata=Bounds(
            min_length=1,
            max_length=MAX_ID_CHARS,
            min_items=1,
            max_items=MAX_DOCUMENTS_PER_JOB,
            unique=True,
            items_name="documents per job",
            item_name="document",
        ).metadata()
    )
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


def _check_json_media(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType(
            f"expected Content-Type application/json, got {media or 'none'}",
            {"expected": "application/json", "got": media or None},
        )


def _json_too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the JSON body is larger than the limit of {max_bytes} bytes (ADE_MAX_JSON_KB)",
        {"max_bytes": max_bytes},
    )


async def read_json_body(request: Any, max_bytes: int) -> Any:
    """Read and decode the JSON body of ``request``: 415 for another media type, 413 beyond
    ``max_bytes`` (a declared Content-Length is refused before reading; a chunked body is cut as
    soon as it passes the cap), 400 for broken JSON."""
    _check_json_media(request.headers.get("Content-Type"))
    declared = parse_count(request.headers.get("Content-Length", "0") or "0")
    if declared is not None and declared > max_bytes:
        raise _json_too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.body:
        size += len(chunk)
        if size > max_bytes:
            raise _json_too_large(max_bytes)
        chunks.append(chunk)
    return _decode_json(b"".join(chunks))


def parse_json_body(raw: bytes, content_type: str | None) -> Any:
    """Decode a JSON request body; 415 for another media type, 400 for broken JSON."""
    _check_json_media(content_type)
    return _decode_json(raw)


def _decode_json(raw: bytes) -> Any:
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


def invalid_body(problems: list[FieldProblem]) -> BadRequest:
    """A 400 naming the wrong fields (the first few in the message; BadRequest caps details)."""
    fields = ", ".join(p["field"] for p in problems[:MAX_LISTED_PROBLEMS])
    if len(problems) > MAX_LISTED_PROBLEMS:
        fields += f" and {len(problems) - MAX_LISTED_PROBLEMS} more"
    return BadRequest(f"invalid request body: {fields}", problems)


def _size_problems(data: dict[str, Any], cls: type) -> list[FieldProblem]:
    """Over-long lists and strings, found before anything looks at a list's elements one by
    one (an over-long list is reported once, its elements not at all)."""
    problems: list[FieldProblem] = []
    for field in attrs.fields(cls):
        bounds = bounds_of(field)
        value = data.get(field.name)
        if bounds is None or value is None:
            continue
        if isinstance(value, list):
            if bounds.max_items is not None and len(value) > bounds.max_items:
                problems.append(
                    FieldProblem(field.name, f"at most {bounds.max_items} {bounds.items_name}")
                )
                continue
            for index, item in enumerate(value):
                problem = _length_problem(item, bounds)
                if problem:
                    problems.append(FieldProblem(f"{field.name}[{index}]", problem))
        elif problem := _length_problem(value, bounds):
            problems.append(FieldProblem(field.name, problem))
    return problems


def _length_problem(value: Any, bounds: Bounds) -> str | None:
    if not isinstance(value, str):
        return None  # the type check reports it
    if bounds.max_length is not None and len(value) > bounds.max_length:
        return f"at most {bounds.max_length} characters"
    if bounds.min_length is not None and len(value) < bounds.min_length:
        return (
            "must not be empty"
            if bounds.min_length == 1
            else (f"at least {bounds.min_length} characters")
        )
    return None


def structure_body(data: Any, cls: type[T]) -> T:
    """Structure ``data`` into ``cls`` strictly; :class:`BadRequest` lists every wrong field."""
    if not isinstance(data, dict):
        raise BadRequest(
            "the request body must be a JSON object",
            [FieldProblem("(body)", f"expected an object, got {_json_type(data)}")],
        )
    problems = _size_problems(data, cls)
    if problems:
        raise invalid_body(problems)
    try:
        body = _strict.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        raise invalid_body(_problems(exc)) from None
    return body


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
