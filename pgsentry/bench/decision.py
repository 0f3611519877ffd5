"""Decision cost: microseconds per statement, no network (helper B's analysis microbenchmark
and helper C's policy evaluation).

Owns calling those microbenchmarks when they exist and turning their figures into a table.
Must not time anything it cannot attribute: when a piece is missing the row says
"not available" instead of a number.
"""

from __future__ import annotations

from pgsentry.bench.report import NOT_AVAILABLE, Table


def decision_table(quick: bool) -> Table:
    table = Table(
        title="Decision cost (µs per statement, no network)",
        headers=("Statement shape", "cached", "fast path", "full parse", "policy decide"),
    )
    table.rows.append(("(analysis microbenchmark)", *(NOT_AVAILABLE for _ in range(4))))
    return table
