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

from pgsentry.bench.report import NOT_AVAILABLE, Table

HEADERS = ("Statement shape", "analysis: cached", "fast path", "full parse", "policy decide")


def _fmt(us: float, digits: int = 2) -> str:
    return f"{us:.{digits}f}"


def _decide_cost(policies: Path, shapes: dict[str, str], count: int) -> dict[str, str]:
    """µs per Policy.decide() on the analysis of one text of each shape."""
    try:
        from pgsentry.analysis import analyze
        from pgsentry.policy import Principal, load_policy

        policy = load_policy(policies)
    except Exception as e:  # reported, never fatal
        return dict.fromkeys(shapes, f"{NOT_AVAILABLE}: {type(e).__name__}: {e}"[:120])
    who = Principal(user="postgres", database="postgres", client_addr="127.0.0.1")
    now = datetime.now(UTC)
    out: dict[str, str] = {}
    for name, template in shapes.items():
        analysis = analyze(template.format(n=7))
        policy.decide(analysis, who, now)
        start = time.perf_counter()
        for _ in range(count):
            policy.decide(analysis, who, now)
        out[name] = _fmt((time.perf_counter() - start) / count * 1e6)
    return out


def decision_table(quick: bool, policies: Path, load_average: str = "") -> Table:
    """Measured first, before anything is started: a pure CPU figure needs a quiet machine
    (run after the idle-connections section it met a load average near 40)."""
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
            "(principal user `postgres`, as the benchmark connects), averaged over the same count."
            + when
        ),
    )
    try:
        from pgsentry.analysis import microbench

        results = microbench.measure(count=count)
        shapes = dict(microbench.SHAPES)
    except Exception as e:  # reported, never fatal
        reason = f"{NOT_AVAILABLE}: {type(e).__name__}: {e}"[:160]
        table.rows.append(("(analysis microbenchmark)", reason, "-", "-", "-"))
        return table
    decide = _decide_cost(policies, shapes, count)
    for name, r in results.items():
        fast = _fmt(r["fast_path"]) if r["fast_path"] else "n/a (always parsed)"
        table.rows.append(
            (name, _fmt(r["cached"]), fast, _fmt(r["full"], 1), decide.get(name, NOT_AVAILABLE))
        )
    return table
