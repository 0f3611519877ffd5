"""Exact constant folding: the value PostgreSQL gives a constant expression, or `Unknown`.

Owns `fold` / `fold_typed` and `Unknown`. Used by the WHERE judgement (where.py), which
reads a NULL or false result as "restricts every row away" (so a wrong false would let a
mass DELETE through), and by set_config / SET argument reading in collector.py.

The rule: an expression folds only when this module reproduces PostgreSQL's evaluation of
it EXACTLY, including the types PostgreSQL infers; anything else raises `Unknown`, which the
WHERE judgement reads as "may be true". In detail:

- integer literals are int4, or int8 / numeric when they do not fit (as PostgreSQL types
  them); decimal literals are numeric, held as `fractions.Fraction` (exact: PostgreSQL's
  numeric + - * and comparisons are exact too). Never Python floats.
- int2 / int4 / int8 results (+ - * unary -, casts) out of the type's range raise Unknown:
  PostgreSQL raises an error there, so nothing runs, but we must not claim a value.
- / % ^ and every other operator or function, float4 / float8 (real, double precision),
  typmods (numeric(p,s), varchar(n)), bpchar / char(n) / name (trailing blanks, truncation),
  casts between numbers and strings other than those listed in `_cast`, bit strings, and
  comparisons of a string literal with a number or boolean raise Unknown.
- strings compare with = / <> only (< > depend on the collation), always as text; || only
  joins two strings.
- operators and type names qualified with a schema other than pg_catalog raise Unknown.
  (An unqualified name is taken as pg_catalog's, which PostgreSQL searches first unless a
  session puts it later in search_path explicitly: see README, known limits.)
- huge numbers (more than ~2400 digits) raise Unknown, so folding stays cheap.

Must not do I/O or import pglast objects.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, NamedTuple

Node = dict[str, Any]


class Unknown(Exception):
    """A constant expression whose PostgreSQL value this module does not reproduce."""


class Typed(NamedTuple):
    """A folded value and the PostgreSQL type it has. `unknown`: a string literal or an
    untyped NULL (PostgreSQL's "unknown" pseudo-type); value None is SQL NULL."""

    type: str
    value: Any


_INT_RANGE = {
    "int2": (-(2**15), 2**15 - 1),
    "int4": (-(2**31), 2**31 - 1),
    "int8": (-(2**63), 2**63 - 1),
}
_NUMERIC_RANK = {"int2": 0, "int4": 1, "int8": 2, "numeric": 3}
_MAX_BITS = 8000  # numerator / denominator size of a numeric we still compute with
_MAX_EXPONENT = 1000

_TYPE_NAMES = {
    "bool": "bool",
    "int2": "int2",
    "int4": "int4",
    "int8": "int8",
    "numeric": "numeric",
    "text": "text",
    "varchar": "text",  # without a typmod: the same comparisons as text
}
_TRUE_WORDS = {"t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"}
_FALSE_WORDS = {"f", "fa", "fal", "fals", "false", "n", "no", "of", "off", "0"}
_SPACE = " \t\n\r\f\v"  # C isspace(), what PostgreSQL's input functions skip
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_COMPARISONS = frozenset({"=", "<>", "!=", "<", ">", "<=", ">="})
_EQUALITY = frozenset({"=", "<>", "!="})
_NULL = Typed("unknown", None)


def fold(node: Any) -> Any:
    """Value of a constant expression (bool / int / Fraction / str / None); raises Unknown."""
    return fold_typed(node).value


def fold_typed(node: Any) -> Typed:
    """Value and type of a constant expression; raises Unknown."""
    if not isinstance(node, dict) or len(node) != 1:
        raise Unknown
    ((kind, n),) = node.items()
    if kind == "A_Const":
        return _const(n)
    if kind == "TypeCast":
        return _cast(fold_typed(n["arg"]), n.get("typeName", {}))
    if kind == "BoolExpr":
        return _fold_bool(n)
    if kind == "A_Expr":
        return _fold_a_expr(n)
    if kind == "NullTest":
        v = fold_typed(n["arg"])
        return Typed("bool", (v.value is None) == (n.get("nulltesttype") == "IS_NULL"))
    if kind == "BooleanTest":
        return _boolean_test(n)
    if kind == "CoalesceExpr":
        vals = [fold_typed(a) for a in n.get("args", [])]
        result = _unify(*vals) if vals else "unknown"
        first = next((v.value for v in vals if v.value is not None), None)
        return Typed(result, first)
    raise Unknown


# --- literals and casts -------------------------------------------------------------------


def _const(n: Node) -> Typed:
    if n.get("isnull"):
        return _NULL
    if "ival" in n:
        return Typed("int4", int(n["ival"].get("ival", 0)))
    if "boolval" in n:
        return Typed("bool", bool(n["boolval"].get("boolval", False)))
    if "sval" in n:
        return Typed("unknown", str(n["sval"].get("sval", "")))
    if "fval" in n:
        text = str(n["fval"].get("fval", ""))
        if _INTEGER.fullmatch(text):
            value = int(text)
            for t in ("int4", "int8"):
                lo, hi = _INT_RANGE[t]
                if lo <= value <= hi:
                    return Typed(t, value)
            return _numeric(Fraction(value))
        return _numeric(_parse_decimal(text))
    raise Unknown  # bit strings


def _parse_decimal(text: str) -> Fraction:
    if not _DECIMAL.fullmatch(text):
        raise Unknown
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise Unknown from None
    if not d.is_finite() or abs(d.adjusted()) > _MAX_EXPONENT:
        raise Unknown
    return Fraction(d)


def _numeric(v: Fraction) -> Typed:
    if v.numerator.bit_length() > _MAX_BITS or v.denominator.bit_length() > _MAX_BITS:
        raise Unknown
    return Typed("numeric", v)


def _int(t: str, v: int) -> Typed:
    lo, hi = _INT_RANGE[t]
    if not lo <= v <= hi:
        raise Unknown  # PostgreSQL: "integer out of range"
    return Typed(t, v)


def _type_of(type_name: Node) -> str:
    """pgsentry's name for a cast's target type; Unknown for types not modelled exactly."""
    names = [x.get("String", {}).get("sval", "") for x in type_name.get("names", [])]
    if (
        not names
        or len(names) > 2
        or (len(names) == 2 and names[0] != "pg_catalog")
        or type_name.get("typmods")
        or type_name.get("arrayBounds")
        or type_name.get("setof")
        or type_name.get("pct_type")
    ):
        raise Unknown
    t = _TYPE_NAMES.get(names[-1])
    if t is None:
        raise Unknown
    return t


def _cast(v: Typed, type_name: Node) -> Typed:
    t = _type_of(type_name)
    if v.value is None:
        if v.type not in ("unknown", t) and not (_is_number(v.type) and _is_number(t)):
            raise Unknown
        return Typed(t, None)
    value = v.value
    if t == "bool":
        if v.type == "bool":
            return v
        if v.type == "int4":
            return Typed("bool", value != 0)
        if v.type in ("unknown", "text"):
            word = str(value).strip(_SPACE).lower()
            if word in _TRUE_WORDS:
                return Typed("bool", True)
            if word in _FALSE_WORDS:
                return Typed("bool", False)
        raise Unknown
    if t in _INT_RANGE:
        if v.type in _INT_RANGE:
            return _int(t, value)
        if v.type in ("unknown", "text"):
            word = str(value).strip(_SPACE)
            if _INTEGER.fullmatch(word):
                return _int(t, int(word))
        raise Unknown  # numeric -> int rounds; bool -> int: not modelled
    if t == "numeric":
        if _is_number(v.type):
            return _numeric(Fraction(value))
        if v.type in ("unknown", "text"):
            return _numeric(_parse_decimal(str(value).strip(_SPACE)))
        raise Unknown
    if v.type in ("unknown", "text"):  # t == "text"
        return Typed("text", value)
    raise Unknown  # number / bool -> text: output formats not modelled


def _is_number(t: str) -> bool:
    return t in _NUMERIC_RANK


# --- operators ----------------------------------------------------------------------------


def _unify(*vals: Typed) -> str:
    """The type PostgreSQL resolves these operands to, where it is modelled exactly."""
    types = {v.type for v in vals if v != _NULL}
    if not types:
        return "unknown"
    if types <= _NUMERIC_RANK.keys():
        return max(types, key=_NUMERIC_RANK.__getitem__)
    if types <= {"unknown", "text"}:
        return "text"
    if types == {"bool"}:
        return "bool"
    raise Unknown  # e.g. '1' = 1: PostgreSQL coerces the literal; not modelled


def opname(n: Node) -> str:
    """An A_Expr's operator; "" when qualified with a schema other than pg_catalog."""
    names = [x.get("String", {}).get("sval", "") for x in n.get("name") or []]
    if not names or len(names) > 2 or (len(names) == 2 and names[0] != "pg_catalog"):
        return ""
    return str(names[-1])


def compare(op: str, a: Typed, b: Typed) -> Typed:
    """`a op b` for a comparison operator; Unknown unless exact."""
    t = _unify(a, b)
    if op not in _COMPARISONS or (t == "text" and op not in _EQUALITY):
        raise Unknown  # string ordering depends on the collation
    if a.value is None or b.value is None:
        return Typed("bool", None)
    x, y = a.value, b.value
    table = {
        "=": x == y,
        "<>": x != y,
        "!=": x != y,
        "<": x < y,
        ">": x > y,
        "<=": x <= y,
        ">=": x >= y,
    }
    return Typed("bool", table[op])


def _arith(op: str, a: Typed, b: Typed) -> Typed:
    t = _unify(a, b)
    if op == "||":
        if t not in ("text", "unknown"):
            raise Unknown
        if a.value is None or b.value is None:
            return Typed("text", None)
        return Typed("text", a.value + b.value)
    if not _is_number(t):
        raise Unknown
    if a.value is None or b.value is None:
        return Typed(t, None)
    if op == "+":
        value = a.value + b.value
    elif op == "-":
        value = a.value - b.value
    else:  # "*"
        value = a.value * b.value
    return _numeric(Fraction(value)) if t == "numeric" else _int(t, value)


def _fold_bool(n: Node) -> Typed:
    op = n.get("boolop")
    vals = [fold_typed(a) for a in n.get("args", [])]
    if any(v.type != "bool" and v != _NULL for v in vals):
        raise Unknown
    bools = [v.value for v in vals]
    if op == "NOT_EXPR" and len(bools) == 1:
        return Typed("bool", None if bools[0] is None else not bools[0])
    if op == "AND_EXPR":
        if False in bools:
            return Typed("bool", False)
        return Typed("bool", None if None in bools else True)
    if op == "OR_EXPR":
        if True in bools:
            return Typed("bool", True)
        return Typed("bool", None if None in bools else False)
    raise Unknown


def _boolean_test(n: Node) -> Typed:
    v = fold_typed(n["arg"])
    if v.type != "bool" and v != _NULL:
        raise Unknown
    x = v.value
    table = {
        "IS_TRUE": x is True,
        "IS_NOT_TRUE": x is not True,
        "IS_FALSE": x is False,
        "IS_NOT_FALSE": x is not False,
        "IS_UNKNOWN": x is None,
        "IS_NOT_UNKNOWN": x is not None,
    }
    t = n.get("booltesttype", "")
    if t not in table:
        raise Unknown
    return Typed("bool", table[t])


def _null_literal(node: Node) -> bool:
    """The literal NULL, the only operand the server's transform_null_equals looks at."""
    return bool((node.get("A_Const") or {}).get("isnull"))


def _fold_a_expr(n: Node) -> Typed:
    kind = n.get("kind")
    op = opname(n)
    right = n.get("rexpr")
    if n.get("lexpr") is None:  # prefix operator
        if kind == "AEXPR_OP" and op in ("-", "+") and right is not None:
            v = fold_typed(right)
            if not _is_number(v.type):
                raise Unknown
            if v.value is None or op == "+":
                return v
            return _numeric(-v.value) if v.type == "numeric" else _int(v.type, -v.value)
        raise Unknown
    left = fold_typed(n["lexpr"])
    if isinstance(right, dict) and "List" in right:  # IN (...), BETWEEN x AND y
        right = right["List"].get("items") or []
    if kind == "AEXPR_OP" and isinstance(right, dict):
        if op in ("+", "-", "*", "||"):
            return _arith(op, left, fold_typed(right))
        if op == "=" and (_null_literal(n["lexpr"]) or _null_literal(right)):
            raise Unknown  # transform_null_equals makes `x = NULL` read `x IS NULL`
        return compare(op, left, fold_typed(right))
    if kind in ("AEXPR_DISTINCT", "AEXPR_NOT_DISTINCT") and isinstance(right, dict):
        r = fold_typed(right)
        if left.value is None or r.value is None:
            _unify(left, r)
            same = left.value is None and r.value is None
        else:
            same = bool(compare("=", left, r).value)
        return Typed("bool", same if kind == "AEXPR_NOT_DISTINCT" else not same)
    if kind == "AEXPR_IN" and isinstance(right, list) and op in ("=", "<>"):
        results = [compare(op, left, fold_typed(x)).value for x in right]
        if op == "=":
            value = True if True in results else (None if None in results else False)
        else:
            value = False if False in results else (None if None in results else True)
        return Typed("bool", value)
    if kind in ("AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN") and isinstance(right, list):
        if len(right) != 2:
            raise Unknown
        lo, hi = (fold_typed(x) for x in right)
        inside = _and(compare(">=", left, lo).value, compare("<=", left, hi).value)
        if kind == "AEXPR_NOT_BETWEEN" and inside is not None:
            inside = not inside
        return Typed("bool", inside)
    if kind == "AEXPR_NULLIF" and isinstance(right, dict):
        r = fold_typed(right)
        t = _unify(left, r)
        equal = compare("=", left, r).value
        return Typed(t, None if equal else left.value)
    raise Unknown


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True
