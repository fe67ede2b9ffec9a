"""Pass 2's decisions: which source column maps to which field. Pure: scores in, plan out.

Each (column, field) pair has a summed score from the column detectors. Pairs below the
threshold are out. The remaining pairs are assigned greedily, best first, so every field gets
at most one column and every column at most one field. Equal scores are ordered by: the header
is exactly the field's label, then it is one of the field's synonyms, then the field's manifest
order, then the column's position (leftmost first). A column that scored at or above the
threshold for a field that another column won stays in the output as an unmapped column, with
the reason naming the winner.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ade.configs.package import FieldSpec

__all__ = ["ColumnDecision", "decide_mapping", "normalize_label"]


def normalize_label(text: str | None) -> str:
    return " ".join((text or "").casefold().replace("_", " ").split())


@attrs.frozen
class ColumnDecision:
    index: int
    field: str | None
    score: float | None  # the mapped field's score, or the best score when unmapped
    unmapped_reason: str | None


def decide_mapping(
    headers: Sequence[str | None],
    scores: Sequence[dict[str, float]],
    fields: Sequence[FieldSpec],
    threshold: float,
    letters: Sequence[str],
) -> list[ColumnDecision]:
    order = {f.name: i for i, f in enumerate(fields)}
    labels = {f.name: normalize_label(f.label) for f in fields}
    synonyms = {f.name: {normalize_label(s) for s in f.synonyms} for f in fields}
    candidates = []
    for index, column_scores in enumerate(scores):
        header = normalize_label(headers[index])
        for field, score in column_scores.items():
            if score < threshold:
                continue
            exact = bool(header) and header == labels[field]
            synonym = bool(header) and header in synonyms[field]
            candidates.append((-score, not exact, not synonym, order[field], index, field, score))
    candidates.sort()
    field_winner: dict[str, int] = {}
    column_field: dict[int, tuple[str, float]] = {}
    lost: dict[int, tuple[str, float]] = {}
    for *_, index, field, score in candidates:
        if index in column_field:
            continue
        if field in field_winner:
            lost.setdefault(index, (field, score))
            continue
        field_winner[field] = index
        column_field[index] = (field, score)
    decisions = []
    for index, column_scores in enumerate(scores):
        if index in column_field:
            field, score = column_field[index]
            decisions.append(ColumnDecision(index, field, score, None))
            continue
        best = max(column_scores.values(), default=None)
        if index in lost:
            field, score = lost[index]
            winner = field_winner[field]
            reason = (
                f"field {field!r} went to column {letters[winner]} "
                f"(score {column_field[winner][1]:g} vs {score:g})"
            )
            decisions.append(ColumnDecision(index, None, score, reason))
        elif best is None:
            decisions.append(ColumnDecision(index, None, None, "no detector voted for any field"))
        else:
            best_field = max(column_scores, key=lambda f: (column_scores[f], -order[f]))
            reason = (
                f"best score {best:g} (field {best_field!r}) is below the threshold {threshold:g}"
            )
            decisions.append(ColumnDecision(index, None, best, reason))
    return decisions
