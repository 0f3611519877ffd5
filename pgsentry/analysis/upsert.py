"""INSERT, and the UPDATE hidden in INSERT ... ON CONFLICT DO UPDATE.

Owns the root handler of INSERT (`insert`). DO UPDATE updates every existing row that one
of the inserted rows collides with, so it is reported as a second fact: kind `update`,
origin `on_conflict`, the INSERT's target as relation, and a `where` that says how far it
can reach:

- the rows come from VALUES (or DEFAULT VALUES, or a SELECT with no FROM, no set
  operation and no function call in its target list outside a sub-SELECT, which makes
  exactly one row; or a FROM of such sources only): the text spells out every row, so the
  set of rows it can touch is bounded and explicit -> `present` (an ordinary upsert);
- anything else (a SELECT from a table, a function such as unnest($1) or generate_series
  (any function call counts, even now(): it might return a set), UNION ...) can produce
  a row for every existing row: the source query's own WHERE restricts the update like
  an UPDATE's WHERE, judged the same way (where.py); the DO UPDATE ... WHERE restricts it
  too. `present` if either restricts, otherwise `tautological` if either is always true,
  otherwise `missing`. For a set operation the least restricted arm counts.

So `INSERT INTO t SELECT * FROM t ON CONFLICT (id) DO UPDATE SET v = 'x'` is an update
with a missing WHERE. Must not cache or know who is asking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgsentry.analysis import kinds as K
from pgsentry.analysis.collector import SKIP_WITH
from pgsentry.analysis.facts import Relation, StatementFacts, WhereClause
from pgsentry.analysis.where import Sensitivity, classify_where

if TYPE_CHECKING:
    from pgsentry.analysis.collector import Collector

Node = dict[str, Any]

_RANK = {WhereClause.PRESENT: 0, WhereClause.TAUTOLOGICAL: 1, WhereClause.MISSING: 2}


def insert(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    inner = c.with_scope(n, c.scope)
    c.walk_except(n, inner, SKIP_WITH)
    mine = c.facts(K.INSERT, origin, text)
    conflict = n.get("onConflictClause") or {}
    if conflict.get("action") == "ONCONFLICT_UPDATE":
        rv = n.get("relation") or {}
        target = Relation(rv.get("schemaname"), rv.get("relname", ""))
        source = _source_where(n.get("selectStmt"), c.run.sens)
        own = classify_where(conflict.get("whereClause"), rv, c.run.sens)
        update = StatementFacts(
            kind=K.UPDATE,
            origin="on_conflict",
            relations=(target,),
            where=_narrowest(source, own),
            text=text,
        )
        c.extra.insert(0, update)  # right after its INSERT
    return mine


def _narrowest(a: WhereClause, b: WhereClause) -> WhereClause:
    return a if _RANK[a] <= _RANK[b] else b


def _widest(a: WhereClause, b: WhereClause) -> WhereClause:
    return a if _RANK[a] >= _RANK[b] else b


def _source_where(node: Node | None, sens: Sensitivity) -> WhereClause:
    """How the rows an INSERT takes from `node` (its selectStmt) are restricted."""
    if node is None:
        return WhereClause.PRESENT  # DEFAULT VALUES: one row
    s = node.get("SelectStmt", node)  # the arms of a set operation come unwrapped
    if s.get("op", "SETOP_NONE") != "SETOP_NONE":
        return _widest(_source_where(s.get("larg"), sens), _source_where(s.get("rarg"), sens))
    if s.get("valuesLists"):
        return WhereClause.PRESENT
    if _explicit_rows(s):
        return WhereClause.PRESENT
    from_ = s.get("fromClause") or []
    target = from_[0].get("RangeVar") if len(from_) == 1 else None
    return classify_where(s.get("whereClause"), target, sens)


def _set_returning(v: Any) -> bool:
    """A function call outside a sub-SELECT (which yields one value): it may return a set."""
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "FuncCall":
                return True
            if k != "SubLink" and _set_returning(x):
                return True
    elif isinstance(v, list):
        return any(_set_returning(x) for x in v)
    return False


def _explicit_rows(s: Node) -> bool:
    """A SELECT whose rows are all written out in the text (see the module docstring)."""
    if _set_returning(s.get("targetList")):
        return False  # a function in the target list may return a set of rows
    for item in s.get("fromClause") or []:
        sub = item.get("RangeSubselect", {}).get("subquery")
        if sub is None or "SelectStmt" not in sub:
            return False
        inner = sub["SelectStmt"]
        if inner.get("op", "SETOP_NONE") != "SETOP_NONE":
            return False
        if not inner.get("valuesLists") and not _explicit_rows(inner):
            return False
    return True
