"""Measurements of one benchmark run and their summaries (median, min-max, ratios).

Owns the in-memory result model: per section, per workload row, per target, the list of
per-round metric values and errors. Must not run anything or format markdown.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Summary:
    """Median and spread (min-max) of one metric over the rounds."""

    median: float
    low: float
    high: float
    n: int


@dataclass(slots=True)
class Runs:
    """All rounds of one workload row against one target."""

    values: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, metrics: Mapping[str, float | None]) -> None:
        for name, value in metrics.items():
            if value is not None:
                self.values.setdefault(name, []).append(value)

    def summary(self, metric: str) -> Summary | None:
        vals = self.values.get(metric)
        if not vals:
            return None
        return Summary(statistics.median(vals), min(vals), max(vals), len(vals))


@dataclass(slots=True)
class Section:
    """One table of the report: rows (workloads) x targets."""

    rows: dict[str, dict[str, Runs]] = field(default_factory=dict)

    def runs(self, row: str, target: str) -> Runs:
        return self.rows.setdefault(row, {}).setdefault(target, Runs())


def ratio(a: Summary | None, b: Summary | None) -> float | None:
    """Ratio of medians a / b, None when either is missing or b is zero."""
    if a is None or b is None or b.median == 0:
        return None
    return a.median / b.median
