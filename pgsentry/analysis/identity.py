"""When two expressions of a WHERE certainly have the same value: `x = x` in disguise.

Owns `same` (structural equality of two expressions after the identities below, ignoring
locations and the target's table qualification) and `colname`. The WHERE judgement
(where.py) reads `a = b`, `a IN (b)`, `a BETWEEN b AND b`, `a = ALL (ARRAY[b])` as `x = x`
when `same(a, b)`.

Identities, applied anywhere in an expression and only when exact for every type on which
the operator exists (an operator the type does not have is an error, which changes no row):

- unary `+x` is x;
- `x + 0`, `0 + x`, `x - 0`, `x * 1`, `1 * x` are x, the constant folded exactly (fold.py)
  to the integer or numeric 0 / 1 (the float -0.0 + 0 is 0.0, which `=` finds equal too);
- `coalesce(x, x, ...)`, `greatest(x, x, ...)`, `least(x, x, ...)` with every argument the
  same are x.

Operators qualified with a schema other than pg_catalog are never read as these. Looking
at a constant's value marks the `Sensitivity`, so the analyzer does not reuse the answer
for a text that differs in constants. Must not import pglast objects or do I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgsentry.analysis.fold import Unknown, fold_typed, opname

if TYPE_CHECKING:
    from pgsentry.analysis.where import Sensitivity

Node = dict[str, Any]

_NUMBERS = frozenset({"int2", "int4", "int8", "numeric"})
# operator -> (constant, the sides it may stand on: 0 left, 1 right)
_NEUTRAL = {"+": (0, (0, 1)), "-": (0, (1,)), "*": (1, (0, 1))}


def same(a: Node, b: Node, names: frozenset[str], sens: Sensitivity) -> bool:
    """True if `a` and `b` are the same expression, up to the identities above."""
    return bool(_strip(a, names, sens) == _strip(b, names, sens))


def colname(ref: Node, names: frozenset[str]) -> tuple[str, ...]:
    """A ColumnRef's name parts, without a qualifier that names the target (`names`)."""
    fields = tuple(f["String"]["sval"] if "String" in f else "*" for f in ref.get("fields", []))
    if len(fields) == 2 and fields[0] in names:
        return fields[1:]
    return fields


def _strip(node: Any, names: frozenset[str], sens: Sensitivity) -> Any:
    if isinstance(node, dict):
        if len(node) == 1:
            if "ColumnRef" in node:
                return ("col", colname(node["ColumnRef"], names))
            handled, value = _identity(node, names, sens)
            if handled:
                return value
        return {k: _strip(v, names, sens) for k, v in node.items() if k != "location"}
    if isinstance(node, list):
        return [_strip(x, names, sens) for x in node]
    return node


def _identity(node: Node, names: frozenset[str], sens: Sensitivity) -> tuple[bool, Any]:
    """(True, `node` stripped: the expression it is an identity of, if any), or (False,
    None) for a node `_strip` handles itself. Each subtree is stripped once, so the cost
    stays linear in the size of the expression."""
    ((kind, n),) = node.items()
    if kind == "A_Expr" and n.get("kind") == "AEXPR_OP":
        op = opname(n)
        left, right = n.get("lexpr"), n.get("rexpr")
        if op == "+" and left is None and isinstance(right, dict):
            return True, _strip(right, names, sens)
        neutral = _NEUTRAL.get(op)
        if neutral is None or not isinstance(left, dict) or not isinstance(right, dict):
            return False, None
        value, sides = neutral
        if 1 in sides and _is_number(right, value, sens):
            return True, _strip(left, names, sens)
        if 0 in sides and _is_number(left, value, sens):
            return True, _strip(right, names, sens)
        return False, None
    if kind in ("CoalesceExpr", "MinMaxExpr"):
        args = [_strip(x, names, sens) for x in n.get("args") or []]
        if args and all(x == args[0] for x in args[1:]):
            return True, args[0]
        rest = {k: _strip(v, names, sens) for k, v in n.items() if k not in ("location", "args")}
        return True, {kind: {**rest, "args": args}}
    return False, None


def _is_number(node: Node, value: int, sens: Sensitivity) -> bool:
    """`node` folds exactly to the integer / numeric `value`."""
    if "ColumnRef" in node:
        return False
    sens.hit = True
    try:
        typed = fold_typed(node)
    except Unknown:
        return False
    return typed.type in _NUMBERS and type(typed.value) is not bool and typed.value == value
