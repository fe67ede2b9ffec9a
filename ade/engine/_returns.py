"""What config functions return: the shapes ADE accepts, checked where the engine receives them.

A return ADE cannot use (a list of the wrong length, a dict cell value, an issue without
``index``) is reported like an exception the function raised: :func:`contract_error` makes a
``ConfigCodeError`` of type ``TypeError`` naming file, function and pass; what was wrong goes to
its traceback (diagnostics). :func:`redact` is the safety net for the messages config authors
write: it masks the cell value an issue is about.
"""

from __future__ import annotations

import datetime as dt
import decimal
import fractions
import json
import math
from typing import Any

from ade.configs.package import FieldSpec
from ade.engine._code import ConfigFunction, contract_error

__all__ = [
    "column_votes",
    "hook_annotations",
    "redact",
    "transform_result",
    "validate_result",
]

# A validator message that quotes the value it rejects would leak the cell into the artifact;
# values this long or longer are masked in messages (shorter ones collide with ordinary words).
_MIN_REDACTED_LENGTH = 3

_WRITABLE = (
    str,
    int,
    float,
    bool,
    dt.datetime,
    dt.date,
    dt.time,
    dt.timedelta,
    decimal.Decimal,
    fractions.Fraction,
    type(None),
)
_WRITABLE_EXACT = frozenset(_WRITABLE)
_SEVERITIES = ("error", "warning")


def _is_finite_number(value: Any) -> bool:
    # Not bool (a vote is a score); not NaN or infinity (scores land in artifact.json, which
    # must stay strict JSON).
    return type(value) is int or (type(value) is float and math.isfinite(value))


def column_votes(
    fn: ConfigFunction, spec: FieldSpec, result: Any, field_names: frozenset[str]
) -> list[tuple[str, float]]:
    if result is None:
        return []
    if _is_finite_number(result):
        return [(spec.name, float(result))]
    if isinstance(result, dict):
        votes = []
        for key, delta in result.items():
            if key not in field_names or not _is_finite_number(delta):
                raise contract_error(
                    fn.file,
                    fn.function,
                    "map",
                    f"returned {{{key!r}: {type(delta).__name__}}}; expected field names "
                    "from manifest.json mapped to finite numbers",
                )
            votes.append((key, float(delta)))
        return votes
    shown = repr(result) if type(result) is float else type(result).__name__
    raise contract_error(
        fn.file, fn.function, "map", f"returned {shown}; expected a finite number or a dict"
    )


def _issue_fields(
    fn: ConfigFunction, pass_name: str, item: Any, n: int, default_severity: str
) -> tuple[int, str, str, str]:
    shape = "{'index': int, 'code': str, 'message': str, 'severity': 'error'|'warning'}"
    if not isinstance(item, dict):
        raise contract_error(
            fn.file,
            fn.function,
            pass_name,
            f"gave an issue of type {type(item).__name__}; expected {shape}",
        )
    index = item.get("index")
    code = item.get("code")
    message = item.get("message", "")
    severity = item.get("severity", default_severity)
    if (
        type(index) is not int
        or not 0 <= index < n
        or not isinstance(code, str)
        or not code
        or not isinstance(message, str)
        or severity not in _SEVERITIES
    ):
        raise contract_error(
            fn.file,
            fn.function,
            pass_name,
            f"gave an issue that is not {shape} with 0 <= index < {n}",
        )
    return index, code, message, severity


def transform_result(
    fn: ConfigFunction, result: Any, n: int, fillable: frozenset[str] = frozenset()
) -> tuple[list[Any], list[tuple[int, str, str]], dict[str, list[Any]]]:
    """The values, warnings and filled fields of a ``transform`` called with ``n`` values.
    ``fill`` may name only ``fillable`` fields (those the table has no column for)."""
    warnings: list[tuple[int, str, str]] = []
    fill: dict[str, list[Any]] = {}
    if isinstance(result, dict):
        raw_warnings = result.get("warnings") or []
        raw_fill = result.get("fill") or {}
        if not isinstance(raw_fill, dict):
            raise contract_error(
                fn.file, fn.function, "transform", "returned 'fill' that is not a dict"
            )
        for name, values in raw_fill.items():
            if name not in fillable:
                raise contract_error(
                    fn.file,
                    fn.function,
                    "transform",
                    f"filled field {name!r}; a transform may fill only fields this table has "
                    f"no column for ({', '.join(sorted(fillable)) or 'none'})",
                )
            fill[name] = _checked_values(fn, values, n)
        result = result.get("values")
        if not isinstance(raw_warnings, list):
            raise contract_error(
                fn.file, fn.function, "transform", "returned 'warnings' that is not a list"
            )
        for item in raw_warnings:
            index, code, message, _ = _issue_fields(fn, "transform", item, n, "warning")
            warnings.append((index, code, message))
    return _checked_values(fn, result, n), warnings, fill


def _checked_values(fn: ConfigFunction, result: Any, n: int) -> list[Any]:
    if not isinstance(result, list) or len(result) != n:
        got = f"list of {len(result)}" if isinstance(result, list) else type(result).__name__
        raise contract_error(
            fn.file,
            fn.function,
            "transform",
            f"returned {got}; expected a list of {n} values (or a dict with "
            "'values', 'warnings' and 'fill')",
        )
    if not _WRITABLE_EXACT.issuperset(map(type, result)):  # C speed in the common case
        for value in result:
            if type(value) not in _WRITABLE_EXACT and not isinstance(value, _WRITABLE):
                raise contract_error(
                    fn.file,
                    fn.function,
                    "transform",
                    f"returned a value of type {type(value).__name__}; a cell holds text, "
                    "numbers, booleans, dates/times or None",
                )
    return result


def validate_result(fn: ConfigFunction, result: Any, n: int) -> list[tuple[int, str, str, str]]:
    """The issues (index, code, message, severity) of a ``validate`` called with ``n`` values."""
    if result is None:
        return []
    try:
        items = list(result)
    except TypeError:
        raise contract_error(
            fn.file,
            fn.function,
            "validate",
            f"returned {type(result).__name__}; expected a list of issue dicts",
        ) from None
    return [_issue_fields(fn, "validate", item, n, "error") for item in items]


def redact(message: str, *values: Any) -> str:
    """Mask each of ``values`` (the cell an issue is about, before and after a transform)
    where ``message`` quotes it."""
    for value in values:
        if value is None:
            continue
        for text in _spellings(value):
            if len(text) >= _MIN_REDACTED_LENGTH and text in message:
                message = message.replace(text, "<value>")
    return message


def _spellings(value: Any) -> tuple[str, ...]:
    """How a message may quote ``value``, longest first. A date-time cell (every Excel date is
    one) is usually quoted as its date alone."""
    text = (value if isinstance(value, str) else str(value)).strip()
    if isinstance(value, dt.datetime):
        return (text, value.isoformat(), value.date().isoformat())
    return (text,)


def hook_annotations(fn: ConfigFunction, hook: str, result: Any) -> list[dict[str, Any]]:
    if result is None:
        return []
    items = [result] if isinstance(result, dict) else result
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise contract_error(
            fn.file,
            fn.function,
            hook,
            f"returned {type(result).__name__}; a hook returns None, a dict or a list of dicts",
        )
    try:
        return json.loads(json.dumps(items, allow_nan=False))
    except (TypeError, ValueError):
        raise contract_error(
            fn.file, fn.function, hook, "returned annotations that are not plain JSON values"
        ) from None
