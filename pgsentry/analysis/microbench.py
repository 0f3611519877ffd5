"""Decision-cost microbenchmark of `analyze` (no network): microseconds per statement.

Owns `measure()` (used by the benchmark suite) and a `python -m` entry point that prints
a markdown table. Shapes: a cached text, the fast path (a never-seen text whose shape is
known), and the full parse of never-seen statements. Must not be imported by the proxy.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from pgsentry.analysis import analyzer

SELECT = "SELECT abalance FROM pgbench_accounts WHERE aid = {n};"
UPDATE = "UPDATE pgbench_accounts SET abalance = abalance + -{n} WHERE aid = {n};"
INSERT = (
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
    "VALUES (3, 1, {n}, -4005, CURRENT_TIMESTAMP);"
)
ORM_SELECT = (
    'SELECT "accounts"."id", "accounts"."owner", "accounts"."balance" FROM "accounts" '
    'INNER JOIN "orders" ON ("accounts"."id" = "orders"."account_id") '
    'WHERE ("orders"."total" > {n} AND "accounts"."owner" = \'alice\') '
    'ORDER BY "accounts"."id" DESC LIMIT 21'
)
DELETE_CTE = "WITH d AS (DELETE FROM orders WHERE total < {n} RETURNING *) SELECT count(*) FROM d"
DO_BLOCK = "DO $$ BEGIN DELETE FROM orders WHERE id = {n}; EXECUTE 'SELECT 1'; END $$"

SHAPES: dict[str, str] = {
    "select (pgbench)": SELECT,
    "update (pgbench)": UPDATE,
    "insert (pgbench)": INSERT,
    "ORM select with join": ORM_SELECT,
    "delete in CTE": DELETE_CTE,
    "DO block": DO_BLOCK,
}


def _per_call(fn: Callable[[str], object], texts: list[str]) -> float:
    start = time.perf_counter()
    for t in texts:
        fn(t)
    return (time.perf_counter() - start) / len(texts) * 1e6


def measure(count: int = 20000) -> dict[str, dict[str, float]]:
    """µs per statement for each shape: {"shape": {"cached", "fast_path", "full"}}.

    `fast_path` is 0.0 for shapes that never take the fast path (they are always parsed).
    """
    results: dict[str, dict[str, float]] = {}
    counter = itertools.count(1_000_000)
    for name, template in SHAPES.items():
        analyzer.clear_cache()
        full_texts = [template.format(n=next(counter)) for _ in range(count)]
        old = analyzer.SHAPE_CACHE_SIZE
        analyzer.SHAPE_CACHE_SIZE = 0  # every text takes the full path (normalize + parse)
        try:
            analyzer.clear_cache()
            full = _per_call(analyzer.analyze, full_texts)
        finally:
            analyzer.SHAPE_CACHE_SIZE = old
        analyzer.clear_cache()
        analyzer.analyze(template.format(n=1))  # learn the shape
        fresh = [template.format(n=next(counter)) for _ in range(count)]
        fast = _per_call(analyzer.analyze, fresh)
        shape_known = analyzer.cache_sizes()[1] > 0
        cached_text = [template.format(n=7)] * count
        analyzer.analyze(cached_text[0])
        cached = _per_call(analyzer.analyze, cached_text)
        results[name] = {
            "cached": cached,
            "fast_path": fast if shape_known else 0.0,
            "full": full,
        }
    analyzer.clear_cache()
    return results


def markdown(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| statement shape | cached µs | fast path µs | full parse µs |",
        "|---|---:|---:|---:|",
    ]
    for name, r in results.items():
        fast = f"{r['fast_path']:.2f}" if r["fast_path"] else "n/a (always parsed)"
        lines.append(f"| {name} | {r['cached']:.2f} | {fast} | {r['full']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(measure()))
