"""Pass 1's row classification: every non-blank row goes through the package's row detectors,
whose votes are summed per row type. This is the engine's hottest loop (once per row per
detector), so the call plan is fixed per sheet and each call is spelled out (``fn.invoke``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ade.configs.package import ConfigPackage
from ade.engine._code import ConfigFunction, LoadedConfig, config_error, contract_error
from ade.errors import ConfigCodeError

__all__ = ["row_classifier"]


def row_classifier(
    package: ConfigPackage,
    code: LoadedConfig,
    field_labels: dict[str, list[str]],
    input_name: str,
    sheet_name: str,
) -> Callable[[int, list[Any], str | None, bool], str]:
    """``classify(row_number, values, previous_row_type, in_table) -> row type`` for one sheet:
    the row type with the highest positive summed vote (ties go to the first in
    ``package.row_types``: header, data, then the others), else ``"other"``."""
    row_types = package.row_types
    plan = [
        (row_type, fn.invoke, fn) for row_type in row_types for fn in code.row_detectors[row_type]
    ]
    available: dict[str, Any] = {
        "field_labels": field_labels,
        "sheet_name": sheet_name,
        "input_name": input_name,
    }
    zero = dict.fromkeys(row_types, 0.0)
    numbers = (int, float, bool)

    def bad_vote(fn: ConfigFunction, result: Any) -> ConfigCodeError:
        shown = (
            "{" + ", ".join(f"{k!r}: {type(v).__name__}" for k, v in result.items()) + "}"
            if isinstance(result, dict)
            else type(result).__name__
        )
        return contract_error(
            fn.file,
            fn.function,
            "detect",
            f"returned {shown}; expected a number or a dict of row types {sorted(zero)} to numbers",
        )

    # What the detectors declare: the others are not computed (one sheet row at a time).
    declared = set().union(*(fn.names for _, _, fn in plan))
    wants_non_empty = "non_empty" in declared
    wants_first_column = "first_column" in declared
    wants_row_type = "row_type" in declared
    totals_of = zero.copy

    # Runs once per row: every statement here is paid a million times on a big sheet.
    def classify(row_number: int, values: list[Any], previous: str | None, in_table: bool) -> str:
        available["values"] = tuple(values)
        available["row_number"] = row_number
        if wants_non_empty:
            available["non_empty"] = len(values) - values.count(None)
        if wants_first_column:
            first = 1
            if values[0] is None:
                first = next(i for i, v in enumerate(values, start=1) if v is not None)
            available["first_column"] = first
        available["previous_row_type"] = previous
        available["in_table"] = in_table
        totals = totals_of()
        for own_type, invoke, fn in plan:
            if wants_row_type:
                available["row_type"] = own_type
            try:
                result = invoke(available)
            except (Exception, SystemExit) as exc:
                raise config_error(fn.file, fn.function, "detect", exc) from exc
            if result is None:
                continue
            if type(result) is dict:
                try:
                    for key, delta in result.items():
                        totals[key] += delta if type(delta) in numbers else None  # type: ignore[operator]
                except (KeyError, TypeError):
                    raise bad_vote(fn, result) from None
            elif type(result) in numbers:
                totals[own_type] += result
            else:
                raise bad_vote(fn, result)
        best = "other"
        best_score = 0.0
        for row_type, score in totals.items():  # header, data, then the others: ties
            if score > best_score:  # go to the first
                best, best_score = row_type, score
        return best

    return classify
