"""Smoke test of the benchmark: `python -m pgsentry.bench --quick --strict` end to end.

Owns checking that the benchmark still runs against a real cluster, a real pgsentry and (when
installed) a real pgbouncer, and that the report has every section and every target. Must
never assert a figure: performance is not part of the suite's pass/fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pgsentry.bench.middles import pgbouncer_binary

SECTIONS = (
    "## Run",
    "## Machine",
    "## pgbench select-only",
    "## pgbench TPC-B-like",
    "## Bulk COPY",
    "## Idle connections",
    "## Decision cost",
)


def _rows(report: str, heading: str) -> list[list[str]]:
    """The table rows (cells) of the section under `heading`, header row excluded."""
    body = report.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in body.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def test_quick_benchmark_produces_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    proc = subprocess.run(
        [sys.executable, "-m", "pgsentry.bench", "--quick", "--strict", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = out.read_text()
    assert report in proc.stdout  # printed as well as written

    for heading in SECTIONS:
        assert heading in report, heading
    assert "python -m pgsentry.bench --quick" in report  # the exact command is recorded

    for heading in ("## pgbench select-only", "## pgbench TPC-B-like", "## Bulk COPY"):
        rows = _rows(report, heading)
        assert {r[1] for r in rows} == {"direct", "pgsentry", "pgbouncer"}, heading
    select_rows = _rows(report, "## pgbench select-only")
    for protocol in ("simple", "prepared"):
        for clients in (1, 8, 32):
            assert any(f"-M {protocol}, {clients} client" in r[0] for r in select_rows)
    copy_labels = {r[0].split(",")[0] for r in _rows(report, "## Bulk COPY")}
    assert copy_labels == {"COPY TO STDOUT", "COPY FROM STDIN"}
    assert "pgsentry" in {r[1] for r in _rows(report, "## Idle connections")}
    assert _rows(report, "## Decision cost")

    # pgsentry must really have been measured; pgbouncer too when it is installed.
    assert "| target pgsentry | measured |" in report
    if pgbouncer_binary() is not None:
        assert "| target pgbouncer | measured |" in report
    else:
        assert "pgbouncer is not installed" in report
