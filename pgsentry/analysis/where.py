"""Judges the WHERE clause of a DELETE / UPDATE (and the ON clause of MERGE).

Owns `classify_where` and the small constant folder behind it. Works on libpg_query's
JSON parse tree (dicts). Conservative by design: an expression that does not depend on
the row (no column reference) restricts nothing, so unless it provably folds to false /
NULL it is TAUTOLOGICAL. Must not import pglast objects or do I/O.

`Sensitivity` records whether the answer looked at a constant's value or type: the
analyzer only reuses a result for a text that differs in constants when it did not.
"""

from __future__ import annotations

from typing import Any

from pgsentry.analysis.facts import WhereClause

Node = dict[str, Any]

ALWAYS, NEVER, DEPENDS = 1, 0, 2  # truth of a condition over all rows


class Sensitivity:
    """Set when a judgement depended on a constant's value (see module docstring)."""

    __slots__ = ("hit",)

    def __init__(self) -> None:
        self.hit = False


class _Unknown(Exception):
    """A constant expression the folder cannot evaluate."""


def classify_where(where: Node | None, target: Node | None, sens: Sensitivity) -> WhereClause:
    """MISSING / TAUTOLOGICAL / PRESENT for a WHERE clause of a statement on `target`."""
    if where is None:
        return WhereClause.MISSING
    if "CurrentOfExpr" in where:
        return WhereClause.PRESENT
    names = _target_names(target)
    truth = _truth(where, names, target, sens)
    return WhereClause.TAUTOLOGICAL if truth == ALWAYS else WhereClause.PRESENT


def _target_names(target: Node | None) -> frozenset[str]:
    if not target:
        return frozenset()
    names = {target.get("relname", "")}
    alias = target.get("alias")
    if alias:
        names.add(alias.get("aliasname", ""))
    return frozenset(names)


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


_COLUMN = frozenset({"ColumnRef"})
_CONSTS = frozenset({"A_Const", "ParamRef"})
_BOOLISH = frozenset({"A_Expr", "BoolExpr", "NullTest", "BooleanTest", "SubLink"})


def _truth(node: Node, names: frozenset[str], target: Node | None, sens: Sensitivity) -> int:
    if not contains(node, _COLUMN):
        # Same value for every row: all rows or none.
        sens.hit = True
        try:
            value = fold(node)
        except _Unknown:
            return ALWAYS
        return NEVER if value is None or value is False else ALWAYS
    ((kind, n),) = node.items()
    if kind == "BoolExpr":
        parts = [_truth(a, names, target, sens) for a in n.get("args", [])]
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
            return {ALWAYS: NEVER, NEVER: ALWAYS}.get(parts[0], DEPENDS)
        return DEPENDS
    if kind == "TypeCast":
        return _truth(n["arg"], names, target, sens)
    if kind == "BooleanTest":
        inner = _truth(n["arg"], names, target, sens)
        if n.get("booltesttype") in ("IS_TRUE", "IS_NOT_FALSE"):
            return inner
        if n.get("booltesttype") in ("IS_FALSE", "IS_NOT_TRUE"):
            return {ALWAYS: NEVER, NEVER: ALWAYS}.get(inner, DEPENDS)
        return DEPENDS
    if kind == "A_Expr":
        return _truth_a_expr(n, names, target, sens)
    if kind == "SubLink":
        return _truth_sublink(n, names, target)
    return DEPENDS


_SAME_TRUE = {"=": ALWAYS, ">=": ALWAYS, "<=": ALWAYS, "<>": NEVER, "!=": NEVER}
_SAME_TRUE |= {"<": NEVER, ">": NEVER}


def _truth_a_expr(n: Node, names: frozenset[str], target: Node | None, sens: Sensitivity) -> int:
    kind = n.get("kind")
    op = _opname(n)
    left, right = n.get("lexpr"), n.get("rexpr")
    if left is None or right is None or isinstance(right, list):
        return DEPENDS
    if (kind == "AEXPR_OP" and op in _SAME_TRUE) or kind in (
        "AEXPR_NOT_DISTINCT",
        "AEXPR_DISTINCT",
    ):
        if _same(left, right, names, sens):
            if kind == "AEXPR_NOT_DISTINCT":
                return ALWAYS
            return NEVER if kind == "AEXPR_DISTINCT" else _SAME_TRUE[op]
        # (condition) = true / false, (condition) <> false ...
        if kind == "AEXPR_OP" and op in ("=", "<>", "!="):
            for cond, const in ((left, right), (right, left)):
                if next(iter(cond)) in _BOOLISH and not contains(const, _COLUMN):
                    sens.hit = True
                    try:
                        value = fold(const)
                    except _Unknown:
                        continue
                    if not isinstance(value, bool):
                        continue
                    inner = _truth(cond, names, target, sens)
                    if (op == "=") != value:  # compared with false
                        return {ALWAYS: NEVER, NEVER: ALWAYS}.get(inner, DEPENDS)
                    return inner
        return DEPENDS
    like = kind in ("AEXPR_LIKE", "AEXPR_ILIKE") and op in ("~~", "~~*")
    if like and not contains(right, _COLUMN):
        sens.hit = True
        try:
            pattern = fold(right)
        except _Unknown:
            return DEPENDS
        if isinstance(pattern, str) and pattern and set(pattern) == {"%"}:
            return ALWAYS
    return DEPENDS


def _truth_sublink(n: Node, names: frozenset[str], target: Node | None) -> int:
    """`id IN (SELECT id FROM same_table)` with no WHERE: every row."""
    if n.get("subLinkType") != "ANY_SUBLINK" or target is None:
        return DEPENDS
    sub = n.get("subselect", {}).get("SelectStmt", {})
    test = n.get("testexpr")
    frm = sub.get("fromClause", [])
    tlist = sub.get("targetList", [])
    if sub.get("whereClause") or len(frm) != 1 or len(tlist) != 1 or test is None:
        return DEPENDS
    rv = frm[0].get("RangeVar")
    if not rv or rv.get("relname") != target.get("relname"):
        return DEPENDS
    if rv.get("schemaname") != target.get("schemaname"):
        return DEPENDS
    col = tlist[0].get("ResTarget", {}).get("val")
    if not col or "ColumnRef" not in test or "ColumnRef" not in col:
        return DEPENDS
    if _colname(test["ColumnRef"], names) == _colname(col["ColumnRef"], _target_names(rv)):
        return ALWAYS
    return DEPENDS


def _null_or_not_null(args: list[Node], names: frozenset[str]) -> bool:
    """`x IS NULL OR x IS NOT NULL`."""
    seen: dict[str, set[str]] = {}
    for a in args:
        nt = a.get("NullTest")
        if nt and "ColumnRef" in nt.get("arg", {}):
            key = repr(_colname(nt["arg"]["ColumnRef"], names))
            seen.setdefault(key, set()).add(nt.get("nulltesttype", ""))
    return any(v == {"IS_NULL", "IS_NOT_NULL"} for v in seen.values())


def _opname(n: Node) -> str:
    name = n.get("name") or [{}]
    return str(name[-1].get("String", {}).get("sval", ""))


def _colname(ref: Node, names: frozenset[str]) -> tuple[str, ...]:
    fields = tuple(f["String"]["sval"] if "String" in f else "*" for f in ref.get("fields", []))
    if len(fields) == 2 and fields[0] in names:
        return fields[1:]
    return fields


def _same(a: Node, b: Node, names: frozenset[str], sens: Sensitivity) -> bool:
    """Structural equality of two expressions, ignoring locations and table qualification."""
    if contains(a, _CONSTS) and contains(b, _CONSTS):
        sens.hit = True
    return bool(_strip(a, names) == _strip(b, names))


def _strip(node: Any, names: frozenset[str]) -> Any:
    if isinstance(node, dict):
        if "ColumnRef" in node and len(node) == 1:
            return ("col", _colname(node["ColumnRef"], names))
        return {k: _strip(v, names) for k, v in node.items() if k != "location"}
    if isinstance(node, list):
        return [_strip(x, names) for x in node]
    return node


# --- constant folding ---------------------------------------------------------------------

_TRUE_WORDS = {"t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"}
_FALSE_WORDS = {"f", "fa", "fal", "fals", "false", "n", "no", "of", "off", "0"}
_INT_TYPES = {"int2", "int4", "int8", "integer", "smallint", "bigint", "int"}
_NUM_TYPES = {"numeric", "float4", "float8", "real", "decimal"}
_TEXT_TYPES = {"text", "varchar", "bpchar", "name", "char"}


def fold(node: Any) -> Any:
    """Value of a constant expression (bool / int / float / str / None); raises _Unknown."""
    ((kind, n),) = node.items()
    if kind == "A_Const":
        return _const(n)
    if kind == "TypeCast":
        return _cast(fold(n["arg"]), n.get("typeName", {}))
    if kind == "BoolExpr":
        return _fold_bool(n)
    if kind == "A_Expr":
        return _fold_a_expr(n)
    if kind == "NullTest":
        v = fold(n["arg"])
        return (v is None) == (n.get("nulltesttype") == "IS_NULL")
    if kind == "BooleanTest":
        v = fold(n["arg"])
        t = n.get("booltesttype", "")
        table = {
            "IS_TRUE": v is True,
            "IS_NOT_TRUE": v is not True,
            "IS_FALSE": v is False,
            "IS_NOT_FALSE": v is not False,
            "IS_UNKNOWN": v is None,
            "IS_NOT_UNKNOWN": v is not None,
        }
        if t not in table:
            raise _Unknown
        return table[t]
    if kind == "CoalesceExpr":
        for a in n.get("args", []):
            v = fold(a)
            if v is not None:
                return v
        return None
    raise _Unknown


def _const(n: Node) -> Any:
    if n.get("isnull"):
        return None
    if "ival" in n:
        return int(n["ival"].get("ival", 0))
    if "boolval" in n:
        return bool(n["boolval"].get("boolval", False))
    if "sval" in n:
        return str(n["sval"].get("sval", ""))
    if "fval" in n:
        return float(n["fval"].get("fval", "0"))
    raise _Unknown


def _cast(v: Any, type_name: Node) -> Any:
    names = type_name.get("names", [])
    if not names or type_name.get("arrayBounds"):
        raise _Unknown
    t = names[-1].get("String", {}).get("sval", "")
    if v is None:
        return None
    if t == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return v != 0
        if isinstance(v, str):
            w = v.strip().lower()
            if w in _TRUE_WORDS:
                return True
            if w in _FALSE_WORDS:
                return False
        raise _Unknown
    try:
        if t in _INT_TYPES and isinstance(v, int | str) and not isinstance(v, bool):
            return int(v)
        if t in _NUM_TYPES and isinstance(v, int | float | str) and not isinstance(v, bool):
            return float(v)
    except ValueError:
        raise _Unknown from None
    if t in _TEXT_TYPES and isinstance(v, str):
        return v
    raise _Unknown


def _fold_bool(n: Node) -> Any:
    op = n.get("boolop")
    vals = [fold(a) for a in n.get("args", [])]
    if any(v is not None and not isinstance(v, bool) for v in vals):
        raise _Unknown
    if op == "NOT_EXPR" and len(vals) == 1:
        return None if vals[0] is None else not vals[0]
    if op == "AND_EXPR":
        if False in vals:
            return False
        return None if None in vals else True
    if op == "OR_EXPR":
        if True in vals:
            return True
        return None if None in vals else False
    raise _Unknown


def _same_type(a: Any, b: Any) -> bool:
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, num) and isinstance(b, num):
        return True
    return isinstance(a, str) and isinstance(b, str)


def _compare(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if not _same_type(a, b):
        raise _Unknown
    if isinstance(a, str) and op not in ("=", "<>", "!="):
        raise _Unknown  # ordering depends on the collation
    table = {
        "=": a == b,
        "<>": a != b,
        "!=": a != b,
        "<": a < b,
        ">": a > b,
        "<=": a <= b,
        ">=": a >= b,
    }
    if op not in table:
        raise _Unknown
    return table[op]


def _arith(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if isinstance(a, bool) or isinstance(b, bool):
        raise _Unknown
    if isinstance(a, int | float) and isinstance(b, int | float):
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
    if op == "||" and isinstance(a, str) and isinstance(b, str):
        return a + b
    raise _Unknown


def _fold_a_expr(n: Node) -> Any:
    kind = n.get("kind")
    op = _opname(n)
    right = n.get("rexpr")
    if n.get("lexpr") is None:
        if kind == "AEXPR_OP" and op == "-" and right is not None:
            v = fold(right)
            if isinstance(v, int | float) and not isinstance(v, bool):
                return -v
        raise _Unknown
    left = fold(n["lexpr"])
    if kind == "AEXPR_OP":
        if op in ("+", "-", "*", "||"):
            return _arith(op, left, fold(right))
        return _compare(op, left, fold(right))
    if kind in ("AEXPR_DISTINCT", "AEXPR_NOT_DISTINCT"):
        r = fold(right)
        if left is None or r is None:
            same = left is None and r is None
        else:
            same = bool(_compare("=", left, r))
        return same if kind == "AEXPR_NOT_DISTINCT" else not same
    if kind == "AEXPR_IN" and isinstance(right, list):
        results = [_compare(op, left, fold(x)) for x in right]
        if op == "=":
            return True if True in results else (None if None in results else False)
        return False if False in results else (None if None in results else True)
    if kind in ("AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN") and isinstance(right, list):
        lo, hi = (fold(x) for x in right)
        inside = _fold_and(_compare(">=", left, lo), _compare("<=", left, hi))
        if kind == "AEXPR_BETWEEN":
            return inside
        return None if inside is None else not inside
    if kind == "AEXPR_NULLIF":
        r = fold(right)
        return None if _compare("=", left, r) else left
    raise _Unknown


def _fold_and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True
