"""Turns an SQL text into `StatementFacts` (the slow, complete path).

Owns `Run.analyze_text`: the text's statements (a long text split first), each read the
way the server will read it (`literals`), and per statement its facts (`statements`, with
the walk in `collector`), followed by those of its nested statements (data-modifying CTEs,
PREPARE, EXPLAIN ANALYZE, COPY (...), CREATE RULE actions, DO / function bodies via
`bodies`). Also owns the run's settings, constant sensitivity and session effects.
Functions bound by name in DDL are found in `bindings`, file_fdw options in `foreign`,
writes to system catalogs in `catalogs`.
Walks plain dicts (`trees`), which is ~10x cheaper than pglast's AST objects. Must not
cache, know who is asking, or do I/O.
"""

from __future__ import annotations

from typing import Any

from pglast import parser

from pgsentry.analysis.bindings import bind_functions
from pgsentry.analysis.catalogs import catalog_writes
from pgsentry.analysis.collector import Collector
from pgsentry.analysis.facts import StatementFacts
from pgsentry.analysis.foreign import server_access
from pgsentry.analysis.statements import ROOTS, SIMPLE, kind_by_prefix
from pgsentry.analysis.trees import sql_tree
from pgsentry.analysis.where import Sensitivity

Node = dict[str, Any]

SPLIT_ABOVE = 16 * 1024  # characters: longer texts are parsed one statement at a time


class Run:
    """One call of analyze(): settings, constant sensitivity, session effects."""

    def __init__(self, standard_conforming_strings: bool | None) -> None:
        #: standard_conforming_strings in force when the text runs; None: not known
        self.scs = standard_conforming_strings
        self.sens = Sensitivity()
        self.effects: dict[tuple[str, str], None] = {}
        # Names of the PL/pgSQL variables / function parameters in scope of the body being
        # analysed (set by bodies.py): a WHERE on them does not restrict rows (where.py).
        self.variables: frozenset[str] = frozenset()

    def effect(self, what: str, value: str) -> None:
        self.effects[(what, value)] = None

    def analyze_text(
        self, sql: str, origin: str, depth: int, *, either: bool = False
    ) -> list[StatementFacts]:
        """Facts of every statement in `sql`; raises pglast.parser.ParseError.

        With `either` (code bodies: they run later, under whatever the caller has set) or
        when the setting is not known, the text is read both ways and the facts of both
        readings count (`literals.off_reading`).
        """
        from pgsentry.analysis.literals import check_text, off_reading

        if not either and self.scs is not None:
            check_text(sql, self.scs)
            return self._facts(sql, origin, depth)
        check_text(sql, True)
        out = self._facts(sql, origin, depth)
        alt = off_reading(sql)
        if alt is not None:
            out.extend(self._facts(alt, origin, depth))
        return out

    def _facts(self, sql: str, origin: str, depth: int) -> list[StatementFacts]:
        if len(sql) > SPLIT_ABOVE:
            # A long text is split first (the parser finds the statements) and each one
            # parsed alone: one parse tree of 100,000 statements takes about a GB, and one
            # call to build it would hold the interpreter for seconds.
            pieces = parser.split(sql, with_parser=True, only_slices=True)
            if len(pieces) > 1:
                out: list[StatementFacts] = []
                for piece in pieces:
                    out.extend(self._facts(sql[piece], origin, depth))
                return out
        tree = sql_tree(sql)
        raws = tree.get("stmts", [])
        out = []
        data = sql.encode("utf-8") if len(raws) > 1 and not sql.isascii() else None
        for raw in raws:
            if len(raws) == 1:
                text = whole_text(sql)
            else:
                start = raw.get("stmt_location", 0)
                length = raw.get("stmt_len", 0)
                end = start + length if length else None
                if data is None:
                    text = sql[start:end].strip()
                else:
                    text = data[start:end].decode("utf-8", "replace").strip()
            out.extend(self.statement(raw["stmt"], origin, text, frozenset(), depth))
        return out

    def statement(
        self, node: Node, origin: str, text: str, scope: frozenset[str], depth: int
    ) -> list[StatementFacts]:
        """Facts of one statement node, followed by those of its nested statements."""
        ((key, n),) = node.items()
        c = Collector(self, scope)
        bind_functions(c, key, n)  # flagged functions DDL binds by name (bindings.py)
        c.extra.extend(server_access(key, n, text))  # file_fdw program / filename
        c.extra.extend(catalog_writes(key, n, origin, text))  # UPDATE pg_trigger ...
        handler = ROOTS.get(key)
        if handler is None:
            kind = SIMPLE.get(key) or kind_by_prefix(key)
            c.walk(n, scope)
            mine = c.facts(kind, origin, text)
        else:
            mine = handler(c, n, origin, text, depth)
        out = [mine, *c.extra]
        for sub, sub_origin, sub_scope in c.nested:
            out.extend(self.statement(sub, sub_origin, text, sub_scope, depth))
        return out


def whole_text(sql: str) -> str:
    """The text of a one-statement SQL string: stripped, one trailing ';' removed."""
    text = sql.strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
    return text
