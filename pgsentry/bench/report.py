"""The markdown report: run description, machine, one table per workload family.

Owns formatting only: medians with their spread (min-max), ratios of medians to direct and
to pgbouncer, errors as footnotes, unavailable targets named with the reason. Must not run
or measure anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pgsentry.bench.results import Runs, Section, Summary, ratio

NOT_AVAILABLE = "not available"


@dataclass(frozen=True, slots=True)
class Column:
    metric: str
    header: str
    digits: int = 1


@dataclass(frozen=True, slots=True)
class SectionSpec:
    """How one measured section is laid out."""

    title: str
    columns: tuple[Column, ...]
    ratio_metric: str | None  # compared by ratio of medians, None = no ratio columns
    note: str = ""


@dataclass(slots=True)
class Table:
    """A plain table (machine description, decision cost) with optional notes."""

    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    note: str = ""


def _num(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def cell(runs: Runs | None, col: Column) -> str:
    """`median (min-max)` of one metric over the rounds, with failed rounds counted."""
    if runs is None:
        return "-"
    s = runs.summary(col.metric)
    if s is None:
        return "error" if runs.errors else "n/a"
    text = _num(s.median, col.digits)
    if s.n > 1:
        text += f" ({_num(s.low, col.digits)}-{_num(s.high, col.digits)})"
    if runs.errors:
        text += f" [{len(runs.errors)} failed]"
    return text


def _ratio(a: Summary | None, b: Summary | None) -> str:
    r = ratio(a, b)
    return "-" if r is None else f"{r:.2f}"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return out


def render_section(
    spec: SectionSpec, section: Section, targets: Sequence[tuple[str, str | None]]
) -> list[str]:
    """`targets` is (name, reason-if-unavailable) in the order they were run."""
    headers = ["Workload", "Target", *(c.header for c in spec.columns)]
    if spec.ratio_metric is not None:
        headers += ["÷ direct", "÷ pgbouncer"]
    rows: list[list[str]] = []
    errors: list[str] = []
    for label, by_target in section.rows.items():
        direct = by_target.get("direct")
        bouncer = by_target.get("pgbouncer")
        for name, unavailable in targets:
            runs = by_target.get(name)
            if unavailable is not None:
                cells = [NOT_AVAILABLE for _ in spec.columns]
            elif runs is None:
                continue
            else:
                cells = [cell(runs, c) for c in spec.columns]
                errors += [f"{label} via {name}: {e}" for e in runs.errors]
            row = [label, name, *cells]
            if spec.ratio_metric is not None:
                m = spec.ratio_metric
                mine = runs.summary(m) if runs is not None and unavailable is None else None
                row.append(_ratio(mine, direct.summary(m) if direct else None))
                row.append(_ratio(mine, bouncer.summary(m) if bouncer else None))
            rows.append(row)
    lines = [f"## {spec.title}", ""]
    if spec.note:
        lines += [spec.note, ""]
    lines += _md_table(headers, rows)
    if errors:
        lines += ["", "Failed runs:", ""] + [f"- {e}" for e in errors[:20]]
    return [*lines, ""]


def render_table(table: Table) -> list[str]:
    lines = [f"## {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    return [*lines, *_md_table(table.headers, table.rows), ""]


def render(
    title: str,
    preamble: Sequence[Table],
    sections: Sequence[tuple[SectionSpec, Section]],
    targets: Sequence[tuple[str, str | None]],
    trailer: Sequence[Table],
) -> str:
    lines = [f"# {title}", ""]
    for table in preamble:
        lines += render_table(table)
    for spec, section in sections:
        lines += render_section(spec, section, targets)
    for table in trailer:
        lines += render_table(table)
    return "\n".join(lines).rstrip() + "\n"
