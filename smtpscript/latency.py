"""Latency summaries in constant memory: a log-scale histogram.

Load mode runs a scenario up to millions of times; keeping every duration to sort
them at the end would grow without bound. Buckets 1% wide (from 1 µs up) give
percentiles within 1% of the exact value in a few kilobytes, whatever the count;
min and max are kept exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_GROWTH = 1.01  # each bucket 1% wider than the one before
_LOG_GROWTH = math.log(_GROWTH)
_log = math.log
_FLOOR_MS = 0.001  # 1 µs: anything faster shares the first bucket


@dataclass
class LatencySummary:
    """What a report shows of a set of durations, in milliseconds."""

    count: int = 0
    min_ms: float = 0.0
    median_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


class Histogram:
    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.low = math.inf
        self.high = 0.0

    def add(self, ms: float) -> None:
        if not ms >= 0:  # NaN or negative: a clock gone wrong, not a latency
            return
        self.count += 1
        if ms < self.low:  # not min()/max(): eight of these a session in load mode
            self.low = ms
        if ms > self.high:
            self.high = ms
        index = 0 if ms <= _FLOOR_MS else int(_log(ms / _FLOOR_MS) / _LOG_GROWTH) + 1
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1

    def merge(self, other: Histogram) -> None:
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.count += other.count
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)

    def quantile(self, q: float) -> float:
        """The value below which a fraction ``q`` of the durations fall (within 1%)."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                upper = _FLOOR_MS * _GROWTH**index
                return min(max(upper, self.low), self.high)
        return self.high

    def summary(self) -> LatencySummary:
        if not self.count:
            return LatencySummary()
        return LatencySummary(
            count=self.count,
            min_ms=round(self.low, 3),
            median_ms=round(self.quantile(0.5), 3),
            p90_ms=round(self.quantile(0.9), 3),
            p99_ms=round(self.quantile(0.99), 3),
            max_ms=round(self.high, 3),
        )
