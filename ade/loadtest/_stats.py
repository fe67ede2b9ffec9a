"""Counting and percentiles: plain objects with no I/O, so tests drive them directly.

Why nearest-rank percentiles: with a few hundred samples an interpolated p99 reports a latency no
request ever had; nearest-rank always names a real observation (and p100 is the max).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import attrs

__all__ = ["LatencySummary", "RequestLog", "percentile", "summarize"]


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence; ``fraction`` in (0, 1]."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rank = math.ceil(fraction * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


@attrs.frozen
class LatencySummary:
    """p50/p95/p99/max of one latency series, in the unit the caller measured (ms or s)."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


def summarize(values: Iterable[float]) -> LatencySummary:
    ordered = sorted(values)
    if not ordered:
        return LatencySummary(count=0, p50=None, p95=None, p99=None, max=None)
    return LatencySummary(
        count=len(ordered),
        p50=percentile(ordered, 0.50),
        p95=percentile(ordered, 0.95),
        p99=percentile(ordered, 0.99),
        max=ordered[-1],
    )


class RequestLog:
    """Every request the harness made, by route template and outcome.

    The outcome is the HTTP status as a string ("202", "429", ...) or, when no response came
    back, ``"transport:<ExceptionType>"``. Transport failures while a chaos kill had the server
    down are expected and kept apart (``outage``) from those that mean the server misbehaved.
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.outage_counts: Counter[tuple[str, str]] = Counter()
        self.submit_latencies_ms: list[float] = []

    def record(self, route: str, outcome: str, *, during_outage: bool = False) -> None:
        if during_outage:
            self.outage_counts[(route, outcome)] += 1
        else:
            self.counts[(route, outcome)] += 1

    def record_submit_latency(self, seconds: float) -> None:
        self.submit_latencies_ms.append(seconds * 1000.0)

    def by_route(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for (route, outcome), count in sorted(self.counts.items()):
            table.setdefault(route, {})[outcome] = count
        return table

    def outage_by_route(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for (route, outcome), count in sorted(self.outage_counts.items()):
            table.setdefault(route, {})[outcome] = count
        return table

    def total(self) -> int:
        return sum(self.counts.values()) + sum(self.outage_counts.values())

    def server_errors(self) -> dict[str, int]:
        """Every 5xx response, outage or not: a dying server may answer, but never with 5xx."""
        found: Counter[str] = Counter()
        for counter in (self.counts, self.outage_counts):
            for (route, outcome), count in counter.items():
                if outcome.isdigit() and 500 <= int(outcome) <= 599:
                    found[f"{route} {outcome}"] += count
        return dict(sorted(found.items()))

    def transport_errors(self) -> dict[str, int]:
        """Requests that got no response while the server was supposed to be up."""
        found: Counter[str] = Counter()
        for (route, outcome), count in self.counts.items():
            if outcome.startswith("transport:"):
                found[f"{route} {outcome}"] += count
        return dict(sorted(found.items()))
