"""A cumulative histogram as plain data: observe in any thread, snapshot for the exporter."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

import attrs

__all__ = [
    "DURATION_BUCKETS",
    "FAST_BUCKETS",
    "JOB_BUCKETS",
    "Histogram",
    "HistogramSnapshot",
]

# Seconds. HTTP handlers and store calls: a millisecond to a few seconds.
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DURATION_BUCKETS = FAST_BUCKETS
# Jobs and queue waits: a tenth of a second to the default timeout of five minutes and beyond.
JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


@attrs.frozen
class HistogramSnapshot:
    """``counts[i]`` observations were <= ``bounds[i]`` (cumulative); ``count`` includes +Inf."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    total: float


class Histogram:
    """Bucket counts and a sum. A lock because the stores observe from worker threads."""

    def __init__(self, bounds: Sequence[float] = FAST_BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("bucket bounds must be strictly increasing")
        self._bounds = tuple(float(b) for b in bounds)
        self._hits = [0] * (len(self._bounds) + 1)  # the last slot is +Inf
        self._total = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        slot = bisect.bisect_left(self._bounds, value)
        with self._lock:
            self._hits[slot] += 1
            self._total += value

    def snapshot(self) -> HistogramSnapshot:
        with self._lock:
            hits = list(self._hits)
            total = self._total
        cumulative: list[int] = []
        running = 0
        for hit in hits[:-1]:
            running += hit
            cumulative.append(running)
        return HistogramSnapshot(self._bounds, tuple(cumulative), running + hits[-1], total)
