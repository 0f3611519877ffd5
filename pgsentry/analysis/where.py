"""Judges the WHERE clause of a DELETE / UPDATE (and the ON clause of MERGE).

Owns `classify_where`: MISSING, TAUTOLOGICAL (restricts no rows) or PRESENT. Works on
libpg_query's JSON parse tree (dicts). Conservative by design:

- A condition, or a part of one, that cannot depend on the target row has the same value
  for every target row (targets.py says which column references may denote the target
  row: not a column of another FROM / USING item, not a PL/pgSQL variable or function
  parameter, not a column of a subquery's own FROM items). It restricts nothing unless it
  provably folds to false / NULL with exactly PostgreSQL's evaluation (fold.py). So a
  column of another source, a variable, a $n parameter, an uncorrelated subquery or a
  function call in place of a restriction makes the WHERE TAUTOLOGICAL.
- `WHERE false`, `WHERE 1 = 2`, `WHERE NULL` fold exactly to false / NULL: they change no
  row, so they are PRESENT (nothing to protect), as is every WHERE that may depend on the
  target row but is not one of the recognised tautologies below.
- Tautologies on the target row: x = x, x IS NULL OR x IS NOT NULL, col LIKE '%%', c OR
  true, NOT false, (x = x) = true ..., and `col IN (SELECT col FROM same_table)` when that
  subquery is unbounded. A subquery with LIMIT / OFFSET / FETCH FIRST (other than ALL,
  NULL, OFFSET 0), DISTINCT ON, GROUP BY, HAVING, a window, a locking clause (FOR UPDATE
  SKIP LOCKED), a set operation, a WITH, or a WHERE that restricts its own rows is bounded:
  job queues and batched deletes are PRESENT.
- `x = x` in disguise counts the same (identity.py says when two expressions are the
  same: +x, x + 0, coalesce(x, x) ...): x IN (x, ...), x BETWEEN x AND x, x = ANY / ALL
  (ARRAY[x, ...]). Like `x = x`, these are true on every row where x is not NULL, and are
  read as always true.
- System columns are never NULL: `ctid IS NOT NULL` (any of ctid, xmin, xmax, cmin, cmax,
  tableoid of the target) is always true, and `tableoid > 0` / `<> 0` / `>= 0` too (an
  oid is unsigned and no table has oid 0). Any other condition on a system column
  (`ctid = '(0,1)'`, `tableoid = 'part_1'::regclass`, `xmin = 1234`) is a restriction.

`Sensitivity` records whether the answer looked at a constant's value or type: the
analyzer only reuses a result for a text that differs in constants when it did not.
Must not import pglast objects or do I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pgsentry.analysis.facts import WhereClause
from pgsentry.analysis.fold import Unknown, fold, fold_typed, opname
from pgsentry.analysis.identity import colname, same
from pgsentry.analysis.targets import (
    Scope,
    Source,
    depends_on_target,
    dml_scope,
    fields,
    qualified_source,
    refers_to_target,
    select_scope,
)

__all__ = ["Sensitivity", "classify_where", "contains", "fold"]

Node = dict[str, Any]

ALWAYS, NEVER, DEPENDS = 1, 0, 2  # truth of a condition over all rows


class Sensitivity:
    """Set when a judgement depended on a constant's value (see module docstring)."""

    __slots__ = ("hit",)

    def __init__(self) -> None:
        self.hit = False


def classify_where(
    where: Node | None,
    target: Node | None,
    sens: Sensitivity,
    *,
    others: Sequence[Node] = (),
    variables: frozenset[str] = frozenset(),
) -> WhereClause:
    """MISSING / TAUTOLOGICAL / PRESENT for a WHERE clause of a statement on `target`.

    `others`: the statement's other FROM items (DELETE USING, UPDATE FROM, MERGE USING);
    `variables`: PL/pgSQL variables / function parameters in scope (see targets.py).
    """
    if where is None:
        return WhereClause.MISSING
    if "CurrentOfExpr" in where:
        return WhereClause.PRESENT
    scope = dml_scope(target, list(others), variables)
    truth = _truth(where, scope, target, sens)
    return WhereClause.TAUTOLOGICAL if truth == ALWAYS else WhereClause.PRESENT


def contains(node: Any, keys: frozenset[str]) -> bool:
    """True if any node of one of the `keys` types occurs in the subtree."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in keys or contains(v, keys):
                return True
    elif isinstance(node, list):
        for x in node:
            if contains(x, keys):
                return True
    return False


_CONSTS = frozenset({"A_Const", "ParamRef"})
_BOOLISH = frozenset({"A_Expr", "BoolExpr", "NullTest", "BooleanTest", "SubLink"})
_NOT = {ALWAYS: NEVER, NEVER: ALWAYS}


def _constant_truth(node: Node, sens: Sensitivity) -> int:
    """Truth of a condition with the same value for every target row."""
    sens.hit = True
    try:
        value = fold(node)
    except Unknown:
        return ALWAYS
    return NEVER if value is None or value is False else ALWAYS


def _truth(node: Node, scope: Scope, target: Node | None, sens: Sensitivity) -> int:
    if not depends_on_target(node, scope):
        return _constant_truth(node, sens)
    ((kind, n),) = node.items()
    names = scope.target_names()
    if kind == "BoolExpr":
        parts = [_truth(a, scope, target, sens) for a in n.get("args", [])]
        op = n.get("boolop")
        if op == "AND_EXPR":
            if all(p == ALWAYS for p in parts):
                return ALWAYS
            return NEVER if NEVER in parts else DEPENDS
        if op == "OR_EXPR":
            if ALWAYS in parts or _null_or_not_null(n.get("args", []), names):
                return ALWAYS
            return NEVER if all(p == NEVER for p in parts) else DEPENDS
        if op == "NOT_EXPR" and parts:
            return _NOT.get(parts[0], DEPENDS)
        return DEPENDS
    if kind == "TypeCast":
        return _truth(n["arg"], scope, target, sens)
    if kind == "BooleanTest":
        # NEVER stands for false and for NULL alike, so only IS TRUE keeps it; the tests
        # that a NULL passes are read as true whenever the inner part is not row-dependent.
        inner = _truth(n["arg"], scope, target, sens)
        test = n.get("booltesttype")
        if test == "IS_TRUE":
            return inner
        if test in ("IS_NOT_FALSE", "IS_UNKNOWN", "IS_NOT_UNKNOWN"):
            return DEPENDS if inner == DEPENDS else ALWAYS
        if test in ("IS_FALSE", "IS_NOT_TRUE"):
            return _NOT.get(inner, DEPENDS)
        return DEPENDS
    if kind == "A_Expr":
        return _truth_a_expr(n, scope, target, sens)
    if kind == "SubLink":
        return _truth_sublink(n, scope, target, sens)
    if kind == "NullTest" and _system_column(n.get("arg") or {}, scope):
        return ALWAYS if n.get("nulltesttype") == "IS_NOT_NULL" else NEVER
    if (
        kind == "NullTest"
        and n.get("nulltesttype") == "IS_NOT_NULL"
        and _whole_row(n.get("arg") or {}, scope)
    ):
        # `t IS NOT NULL`: every row none of whose columns is NULL, which in a table of
        # NOT NULL columns is every row; counted as touching every row.
        return ALWAYS
    return DEPENDS


def _whole_row(node: Node, scope: Scope) -> bool:
    """`t` or `t.*` naming the target row (a column named like the table reads stricter)."""
    ref = node.get("ColumnRef") if isinstance(node, dict) else None
    if ref is None:
        return False
    parts = fields(ref)
    if (len(parts) == 2 and parts[1] == "*") or len(parts) == 1:
        return parts[0] in scope.target_names()
    return False


# Columns every row has and that are never NULL; no user column may be named like them.
_SYSTEM_COLUMNS = frozenset({"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"})


def _system_column(node: Node, scope: Scope) -> str | None:
    """The name of the target's system column `node` is (`ctid`, `t.ctid`), or None."""
    ref = node.get("ColumnRef") if isinstance(node, dict) else None
    if ref is None:
        return None
    parts = fields(ref)
    if not parts or parts[-1] not in _SYSTEM_COLUMNS or len(parts) > 2:
        return None
    if len(parts) == 2 and parts[0] not in scope.target_names():
        return None  # a composite column's field, or another item's
    return parts[-1] if refers_to_target(parts, scope) else None


# `tableoid op 0` that holds for every row: an oid is unsigned, and no relation has oid 0.
_TABLEOID_VS_ZERO = {">": ALWAYS, "<>": ALWAYS, "!=": ALWAYS, ">=": ALWAYS}
_TABLEOID_VS_ZERO_MIRRORED = {"<": ALWAYS, "<>": ALWAYS, "!=": ALWAYS, "<=": ALWAYS}


def _tableoid_vs_zero(op: str, left: Node, right: Node, scope: Scope, sens: Sensitivity) -> int:
    for col, const, table in (
        (left, right, _TABLEOID_VS_ZERO),
        (right, left, _TABLEOID_VS_ZERO_MIRRORED),
    ):
        if op not in table or _system_column(col, scope) != "tableoid" or "A_Const" not in const:
            continue
        sens.hit = True
        try:
            typed = fold_typed(const)
        except Unknown:
            continue
        if typed.type == "int4" and type(typed.value) is int and typed.value == 0:
            return table[op]
    return DEPENDS


_SAME_TRUE = {"=": ALWAYS, ">=": ALWAYS, "<=": ALWAYS, "<>": NEVER, "!=": NEVER}
_SAME_TRUE |= {"<": NEVER, ">": NEVER}


def _truth_a_expr(n: Node, scope: Scope, target: Node | None, sens: Sensitivity) -> int:
    kind = n.get("kind")
    op = opname(n)
    names = scope.target_names()
    left, right = n.get("lexpr"), n.get("rexpr")
    if isinstance(right, dict) and "List" in right:
        right = right["List"].get("items") or []
    if left is None or right is None:
        return DEPENDS
    if isinstance(right, list):
        return _truth_list(str(kind), op, left, right, names, sens)
    if kind in ("AEXPR_OP_ANY", "AEXPR_OP_ALL") and op in _SAME_TRUE and "A_ArrayExpr" in right:
        elements = right["A_ArrayExpr"].get("elements") or []
        matches = [_same(left, e, names, sens) for e in elements]
        if elements and (all(matches) or (kind == "AEXPR_OP_ANY" and any(matches))):
            if kind == "AEXPR_OP_ANY" and not all(matches) and _SAME_TRUE[op] != ALWAYS:
                return DEPENDS  # x <> ANY (ARRAY[x, y]) is x <> y
            return _SAME_TRUE[op]
        return DEPENDS
    if kind == "AEXPR_OP" and op in _TABLEOID_VS_ZERO | _TABLEOID_VS_ZERO_MIRRORED:
        judged = _tableoid_vs_zero(op, left, right, scope, sens)
        if judged != DEPENDS:
            return judged
    if (kind == "AEXPR_OP" and op in _SAME_TRUE) or kind in (
        "AEXPR_NOT_DISTINCT",
        "AEXPR_DISTINCT",
    ):
        if _same(left, right, names, sens):
            if kind == "AEXPR_NOT_DISTINCT":
                return ALWAYS
            return NEVER if kind == "AEXPR_DISTINCT" else _SAME_TRUE[op]
        if op == "=" and _self_join(left, right, scope):
            return ALWAYS
        # (condition) = true / false, (condition) <> false ...
        if kind == "AEXPR_OP" and op in ("=", "<>", "!="):
            for cond, const in ((left, right), (right, left)):
                if next(iter(cond)) in _BOOLISH and not depends_on_target(const, scope):
                    sens.hit = True
                    try:
                        value = fold(const)
                    except Unknown:
                        continue
                    if not isinstance(value, bool):
                        continue
                    inner = _truth(cond, scope, target, sens)
                    if (op == "=") != value:  # compared with false
                        return _NOT.get(inner, DEPENDS)
                    return inner
        return DEPENDS
    like = kind in ("AEXPR_LIKE", "AEXPR_ILIKE") and op in ("~~", "~~*")
    if like:
        sens.hit = True
        try:
            pattern = fold(right)
        except Unknown:
            return DEPENDS
        if isinstance(pattern, str) and pattern and set(pattern) == {"%"}:
            return ALWAYS
    return DEPENDS


_BETWEEN = {
    "AEXPR_BETWEEN": ALWAYS,
    "AEXPR_BETWEEN_SYM": ALWAYS,
    "AEXPR_NOT_BETWEEN": NEVER,
    "AEXPR_NOT_BETWEEN_SYM": NEVER,
}


def _truth_list(
    kind: str, op: str, left: Node, items: list[Node], names: frozenset[str], sens: Sensitivity
) -> int:
    """`x IN (x, ...)` (x = x OR ...), `x NOT IN (x, ...)` (x <> x AND ...) and `x BETWEEN
    x AND x`, read like `x = x`."""
    if kind == "AEXPR_IN" and op in ("=", "<>"):
        if any(_same(left, item, names, sens) for item in items):
            return ALWAYS if op == "=" else NEVER
        return DEPENDS
    if kind in _BETWEEN and len(items) == 2 and all(_same(left, i, names, sens) for i in items):
        return _BETWEEN[kind]
    return DEPENDS


_UNBOUNDED_IF_EMPTY = ("groupClause", "havingClause", "windowClause", "lockingClause")


def _self_join(left: Node, right: Node, scope: Scope) -> bool:
    """`t.col = t2.col` where t is the target row and t2 another FROM item (USING, FROM,
    MERGE's source, a subquery's) that is the same table: every row matches itself."""
    if "ColumnRef" not in left or "ColumnRef" not in right:
        return False
    a = qualified_source(left["ColumnRef"], scope)
    b = qualified_source(right["ColumnRef"], scope)
    if a is None or b is None or a[1] != b[1] or a[0].target == b[0].target:
        return False
    return a[0].relation is not None and a[0].relation == b[0].relation


def _truth_sublink(n: Node, scope: Scope, target: Node | None, sens: Sensitivity) -> int:
    """`col IN (SELECT col FROM same_table)` or `EXISTS (SELECT ... FROM same_table t2
    WHERE t2.col = t.col)`, the subquery unbounded: every row. A UNION counts as the whole
    table when one of its arms does."""
    oper = [x.get("String", {}).get("sval") for x in n.get("operName") or []]
    sub = n.get("subselect", {}).get("SelectStmt", {})
    if n.get("subLinkType") == "EXISTS_SUBLINK" and target is not None:
        return _truth_exists(sub, scope, target, sens)
    if n.get("subLinkType") != "ANY_SUBLINK" or target is None or oper not in ([], ["="]):
        return DEPENDS
    return _truth_in(sub, n.get("testexpr") or {}, scope, target, sens)


def _truth_exists(sub: Node, scope: Scope, target: Node, sens: Sensitivity) -> int:
    frm = sub.get("fromClause") or []
    where = sub.get("whereClause")
    if len(frm) != 1 or where is None or _bounded(sub, sens):
        return DEPENDS
    rv = frm[0].get("RangeVar")
    if not rv or not _same_table(rv, target):
        return DEPENDS
    # Its rows as a second target, as for IN: `t2.col = t.col` then reads as `x = x`, and
    # a condition on t2's own columns bounds it.
    own = select_scope(sub, scope).levels[0][0].names
    rows = Scope(((Source(own, None, True),), *scope.levels), scope.variables)
    return ALWAYS if _truth(where, rows, target, sens) == ALWAYS else DEPENDS


def _same_table(rv: Node, target: Node) -> bool:
    """The same table, as far as the statement tells: the same name, and the same schema
    when both name one (ONLY or not: the conservative reading)."""
    if rv.get("relname") != target.get("relname"):
        return False
    a, b = rv.get("schemaname"), target.get("schemaname")
    return a is None or b is None or a == b


def _truth_in(sub: Node, test: Node, scope: Scope, target: Node, sens: Sensitivity) -> int:
    if sub.get("op") == "SETOP_UNION":
        arms = (sub.get("larg") or {}, sub.get("rarg") or {})
        if any(_truth_in(arm, test, scope, target, sens) == ALWAYS for arm in arms):
            return ALWAYS
        return DEPENDS
    frm = sub.get("fromClause") or []
    tlist = sub.get("targetList") or []
    if len(frm) != 1 or len(tlist) != 1 or "ColumnRef" not in test or _bounded(sub, sens):
        return DEPENDS
    rv = frm[0].get("RangeVar")
    if not rv or not _same_table(rv, target):
        return DEPENDS
    col = tlist[0].get("ResTarget", {}).get("val") or {}
    inner = select_scope(sub, scope)
    if "ColumnRef" not in col or not refers_to_target(fields(test["ColumnRef"]), scope):
        return DEPENDS
    if refers_to_target(fields(col["ColumnRef"]), inner):
        return DEPENDS  # the outer row's column: not the subquery's rows
    own = inner.levels[0][0].names
    if colname(test["ColumnRef"], scope.target_names()) != colname(col["ColumnRef"], own):
        return DEPENDS
    where = sub.get("whereClause")
    if where is not None:
        # Its own rows as a second target: a WHERE on them (or on the outer row) bounds it.
        rows = Scope(((Source(own, None, True),), *scope.levels), scope.variables)
        if _truth(where, rows, rv, sens) != ALWAYS:
            return DEPENDS
    return ALWAYS


def _bounded(sub: Node, sens: Sensitivity) -> bool:
    """A subquery that may return fewer rows than its FROM item has, whatever its WHERE."""
    if sub.get("op", "SETOP_NONE") != "SETOP_NONE" or sub.get("withClause"):
        return True
    if any(sub.get(k) for k in _UNBOUNDED_IF_EMPTY) or sub.get("valuesLists"):
        return True
    if any(d != {} for d in sub.get("distinctClause") or []):  # DISTINCT ON (...)
        return True
    for key in ("limitCount", "limitOffset"):
        expr = sub.get(key)
        if expr is None:
            continue
        sens.hit = True
        try:
            value = fold(expr)
        except Unknown:
            return True
        if value is None or (key == "limitOffset" and value == 0):
            continue  # LIMIT ALL / NULL, OFFSET 0 / NULL
        return True
    return False


def _null_or_not_null(args: list[Node], names: frozenset[str]) -> bool:
    """`x IS NULL OR x IS NOT NULL`."""
    seen: dict[str, set[str]] = {}
    for a in args:
        nt = a.get("NullTest")
        if nt and "ColumnRef" in nt.get("arg", {}):
            key = repr(colname(nt["arg"]["ColumnRef"], names))
            seen.setdefault(key, set()).add(nt.get("nulltesttype", ""))
    return any(v == {"IS_NULL", "IS_NOT_NULL"} for v in seen.values())


# Nodes identity.py may rewrite into a node of another kind (`x + 0`, `coalesce(x, x)`).
_REWRITTEN = frozenset({"A_Expr", "CoalesceExpr", "MinMaxExpr"})


def _same(a: Node, b: Node, names: frozenset[str], sens: Sensitivity) -> bool:
    """Structural equality of two expressions (identity.py), ignoring locations and table
    qualification. With constants on both sides the answer depends on their values."""
    ka, kb = next(iter(a), None), next(iter(b), None)
    if ka != kb and ka not in _REWRITTEN and kb not in _REWRITTEN:
        return False  # `aid = 5`: nodes of different kinds, neither one an identity's
    if contains(a, _CONSTS) and contains(b, _CONSTS):
        sens.hit = True
    return same(a, b, names, sens)
