"""Pass 1's row classification: every non-blank row goes through the package's row detectors,
whose votes are summed per row type. This is the engine's hottest loop (once per row per
detector), so the classifier is generated per sheet with each detector's call spelled out
(``_classify_source``).
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
    detectors = [(row_type, fn) for row_type in row_types for fn in code.row_detectors[row_type]]
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

    def tally(totals: dict[str, float], vote: Any, index: int) -> None:
        """Add a vote that is not a plain float (a dict of votes, an int or a bool)."""
        own_type, fn = detectors[index]
        if type(vote) is dict:
            try:
                for key, delta in vote.items():
                    totals[key] += delta if type(delta) in numbers else None  # type: ignore[operator]
            except (KeyError, TypeError):
                raise bad_vote(fn, vote) from None
        elif type(vote) in numbers:
            totals[own_type] += vote
        else:
            raise bad_vote(fn, vote)

    def failed(index: int, exc: BaseException) -> ConfigCodeError:
        fn = detectors[index][1]
        return config_error(fn.file, fn.function, "detect", exc)

    namespace: dict[str, Any] = {
        "new_totals": zero.copy,
        "tally": tally,
        "failed": failed,
        "field_labels": field_labels,
        "sheet_name": sheet_name,
        "input_name": input_name,
    }
    for index, (row_type, fn) in enumerate(detectors):
        namespace[f"detector_{index}"] = fn.fn
        namespace[f"type_{index}"] = row_type
    exec(_classify_source([fn.names for _, fn in detectors]), namespace)
    classify: Callable[[int, list[Any], str | None, bool], str] = namespace["classify"]
    return classify


# How each argument a row detector may declare is spelled inside the generated classify.
_ARGUMENT_SOURCES = {
    "values": "cells",
    "row_number": "row_number",
    "non_empty": "non_empty",
    "first_column": "first_column",
    "previous_row_type": "previous",
    "in_table": "in_table",
    "row_type": "type_{index}",
    "field_labels": "field_labels",
    "sheet_name": "sheet_name",
    "input_name": "input_name",
}


def _classify_source(declared: list[tuple[str, ...]]) -> str:
    """The source of ``classify`` for detectors declaring ``declared`` (one tuple each), with
    each call spelled out: it runs once per row of every sheet, and a call through a loop, a
    dict of arguments and an invoker costs a few hundred nanoseconds per detector there.
    Only names from ADE's own argument vocabulary reach this text; the detectors and the row
    types (the manifest's words) are variables of the namespace it runs in."""
    names = set().union(*declared)
    lines = [
        "def classify(row_number, values, previous, in_table):",
        "    cells = tuple(values)",
    ]
    if "non_empty" in names:
        lines.append("    non_empty = len(values) - values.count(None)")
    if "first_column" in names:
        lines += [
            "    first_column = 1",
            "    if values[0] is None:",
            "        first_column = next(i for i, v in enumerate(values, 1) if v is not None)",
        ]
    lines.append("    totals = new_totals()")
    for index, arguments in enumerate(declared):
        call = ", ".join(
            f"{name}={_ARGUMENT_SOURCES[name].format(index=index)}" for name in arguments
        )
        lines += [
            "    try:",
            f"        vote = detector_{index}({call})",
            "    except (Exception, SystemExit) as exc:",
            f"        raise failed({index}, exc) from exc",
            "    if type(vote) is float:",
            f"        totals[type_{index}] += vote",
            "    elif vote is not None:",
            f"        tally(totals, vote, {index})",
        ]
    lines += [
        "    best = 'other'",
        "    best_score = 0.0",
        "    for row_type, score in totals.items():  # header, data, then the others: ties",
        "        if score > best_score:  # go to the first",
        "            best, best_score = row_type, score",
        "    return best",
    ]
    return "\n".join(lines) + "\n"
