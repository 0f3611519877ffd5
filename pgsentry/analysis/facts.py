"""The facts that policies match on: the contract between analysis and policy.

Owns the `StatementFacts` / `Analysis` value types only. Produced by
`pgsentry.analysis` (pglast), consumed by `pgsentry.policy`. Pure values, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class WhereClause(str, Enum):  # noqa: UP042  (contract: keep str() as is)
    """How the WHERE clause of a DELETE / UPDATE restricts the rows it touches."""

    PRESENT = "present"  # a real restriction
    MISSING = "missing"  # no WHERE at all
    TAUTOLOGICAL = "tautological"  # WHERE true, 1=1, x = x, ... OR true, NOT false ...


@dataclass(frozen=True, slots=True)
class Relation:
    """A relation a statement touches. `schema` is None when the text left it unqualified.

    An unqualified name may resolve to any schema on the session's search_path, so
    policy matching treats it conservatively (see pgsentry.policy).
    """

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema is not None else self.name


@dataclass(frozen=True, slots=True)
class StatementFacts:
    """One statement, top-level or nested (CTE, DO body, function body, rule action...).

    `kind` is one word of the documented vocabulary (see analysis/kinds.py).
    `origin` says where it was found: "top", "cte", "do_block", "function_body",
    "rule_action", "prepare", "explain", "copy", "subcommand", "on_conflict",
    "fdw_options" (see analysis/kinds.py).
    """

    kind: str
    origin: str = "top"
    relations: tuple[Relation, ...] = ()
    where: WhereClause | None = None  # only for delete / update / merge
    cascade: bool = False
    dynamic_sql: bool = False  # code that cannot be seen statically (EXECUTE in plpgsql...)
    functions: tuple[str, ...] = ()  # flagged dangerous functions called, lower-case names
    text: str = ""  # the statement's own text (best effort, for audit / explain)
    # Named non-relation objects the statement targets or defines: schema, database, role,
    # function, trigger, extension, prepared-statement names ("schema.name" when qualified).
    objects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Analysis:
    """The analysis of one SQL text (a Query message or a Parse message's query).

    `statements` is flattened: every top-level statement, followed by the nested
    statements found inside it. `parse_error` is set when pglast could not parse the
    text (then `statements` is empty and policy applies `on_unparseable`).
    """

    statements: tuple[StatementFacts, ...] = ()
    parse_error: str | None = None
    # Session-state effects the proxy must track (names of SET / PREPARE / DEALLOCATE ...)
    session_effects: tuple[tuple[str, str], ...] = field(default=())
