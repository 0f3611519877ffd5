"""Decision cost: microseconds per statement, no network.

Owns turning helper B's analysis microbenchmark (`pgsentry.analysis.microbench.measure`:
cached text, fast path, full parse) into a table, and timing `Policy.decide` of the policies
under test on the same statement shapes. Must not invent figures: a piece that is missing
or fails is reported as "not available" with the reason.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from pgsentry.analysis import analyze, microbench
from pgsentry.bench.report import NOT_AVAILABLE, Column, Table, cell
from pgsentry.bench.results import Runs
from pgsentry.policy import Policy, Principal, load_policy

HEADERS = ("Statement shape", "analysis: cached", "fast path", "full parse", "policy decide")
_COLUMNS = (
    Column("cached", "", 2),
    Column("fast_path", "", 2),
    Column("full", "", 1),
    Column("decide", "", 2),
)


def _policy(policies: Path) -> tuple[Policy | None, str]:
    """The policies under test, or None and why they could not be loaded."""
    try:
        return load_policy(policies), ""
    except Exception as e:  # reported, never fatal
        return None, f"{NOT_AVAILABLE}: {type(e).__name__}: {e}"[:120]


def _decide_cost(policy: Policy, shapes: dict[str, str], count: int) -> dict[str, float]:
    """µs per Policy.decide() on the analysis of one text of each shape."""
    who = Principal(user="postgres", database="postgres", client_addr="127.0.0.1")
    now = datetime.now(UTC)
    out: dict[str, float] = {}
    for name, template in shapes.items():
        analysis = analyze(template.format(n=7))
        policy.decide(analysis, who, now)
        start = time.perf_counter()
        for _ in range(count):
            policy.decide(analysis, who, now)
        out[name] = (time.perf_counter() - start) / count * 1e6
    return out


def decision_table(quick: bool, policies: Path, load_average: str = "", rounds: int = 3) -> Table:
    """Measured first, before anything is started: a pure CPU figure needs a quiet machine
    (run after the idle-connections section it met a load average near 40). Every shape is
    measured once per round, so a noisy moment hurts one sample of each rather than one
    shape; cells give the median and the spread (min-max) over the rounds."""
    count = 500 if quick else 20000
    when = (
        f" Measured before the cluster started; load average then {load_average}."
        if load_average
        else ""
    )
    table = Table(
        title="Decision cost (µs per statement, no network)",
        headers=HEADERS,
        note=(
            "`pgsentry.analysis.microbench.measure()`: `analyze()` of a text already seen "
            "(cached), of a never-seen text whose shape is known (fast path; n/a = this shape "
            f"is always parsed) and with the shape cache off (full parse), {count} texts each. "
            f"Policy decide: `Policy.decide()` of `{policies.name}/` on that shape's analysis "
            "(principal user `postgres`, as the benchmark connects), averaged over the same "
            f"count. Median over {rounds} rounds, (min-max) in brackets." + when
        ),
    )
    policy, why = _policy(policies)
    shapes = dict(microbench.SHAPES)
    runs = {name: Runs() for name in shapes}
    try:
        for _ in range(rounds):
            results = microbench.measure(count=count)
            decide = _decide_cost(policy, shapes, count) if policy is not None else {}
            for name, r in results.items():
                fast = r["fast_path"] or None  # 0.0: the shape is always parsed
                runs[name].add({**r, "fast_path": fast, "decide": decide.get(name)})
    except Exception as e:  # reported, never fatal
        reason = f"{NOT_AVAILABLE}: {type(e).__name__}: {e}"[:160]
        table.rows.append(("(analysis microbenchmark)", reason, "-", "-", "-"))
        return table
    for name, shape_runs in runs.items():
        cached, fast_cell, full, decide_cell = (cell(shape_runs, c) for c in _COLUMNS)
        if fast_cell == "n/a":
            fast_cell = "n/a (always parsed)"
        decide_cell = decide_cell if policy is not None else why
        table.rows.append((name, cached, fast_cell, full, decide_cell))
    return table
