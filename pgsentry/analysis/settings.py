"""Which settings a `set_config(name, ...)` fed by `pg_settings.name` can change.

Owns `settings_named(select)`: for a SELECT reading only `pg_settings` whose WHERE pins
`name` to constants (`name = 'x'`, `name IN ('x', 'y')`, as top-level AND conjuncts), those
constants, else None; and `is_name_column(arg, select)`. pg_dump (15.14 and later) sets
`restrict_nonsystem_relation_kind` that way, through `SELECT set_config(name, ...) FROM
pg_settings WHERE name = '...'`. The target list runs only on the rows the WHERE kept, so
there `name` is one of the constants; anywhere else (the WHERE itself, a subquery, another
FROM item) nothing is known. Works on libpg_query's JSON parse tree; no I/O.
"""

from __future__ import annotations

from typing import Any

Node = dict[str, Any]

_SYSTEM_VIEW = "pg_settings"


def settings_named(select: Node) -> frozenset[str] | None:
    """The settings `name` is pinned to in this SELECT's target list, or None."""
    refs = _name_refs(select)
    if refs is None:
        return None
    where = select.get("whereClause")
    if where is None:
        return None
    boolean = where.get("BoolExpr")
    conjuncts = (
        boolean.get("args", [])
        if boolean is not None and boolean.get("boolop") == "AND_EXPR"
        else [where]
    )
    names: frozenset[str] | None = None
    for conjunct in conjuncts:
        pinned = _pinned(conjunct, refs)
        if pinned is not None:
            names = pinned if names is None else names & pinned
    return names


def is_name_column(arg: Node, select: Node) -> bool:
    """`arg` is this SELECT's reference to pg_settings.name."""
    refs = _name_refs(select)
    return refs is not None and _ref(arg) in refs


def _name_refs(select: Node) -> frozenset[tuple[str, ...]] | None:
    """How this SELECT can spell pg_settings.name: only when pg_settings is its one source."""
    sources = select.get("fromClause") or []
    if len(sources) != 1 or select.get("op", "SETOP_NONE") != "SETOP_NONE":
        return None
    rangevar = sources[0].get("RangeVar")
    if (
        rangevar is None
        or rangevar.get("relname") != _SYSTEM_VIEW
        or rangevar.get("schemaname", "pg_catalog") != "pg_catalog"
        or "catalogname" in rangevar
    ):
        return None
    alias = (rangevar.get("alias") or {}).get("aliasname")
    if alias:  # an aliased relation is known by its alias only
        return frozenset({("name",), (str(alias), "name")})
    return frozenset({("name",), (_SYSTEM_VIEW, "name"), ("pg_catalog", _SYSTEM_VIEW, "name")})


def _ref(node: Node) -> tuple[str, ...] | None:
    column = node.get("ColumnRef") if isinstance(node, dict) else None
    if column is None:
        return None
    fields = column.get("fields", [])
    if not all("String" in f for f in fields):
        return None  # name.*, or something stranger
    return tuple(str(f["String"].get("sval", "")) for f in fields)


def _string(node: Node) -> str | None:
    const = node.get("A_Const") if isinstance(node, dict) else None
    if const is None or "sval" not in const:
        return None
    return str(const["sval"].get("sval", ""))


def _pinned(conjunct: Node, refs: frozenset[tuple[str, ...]]) -> frozenset[str] | None:
    """The constants one conjunct pins `name` to: `name = 'x'`, `'x' = name`, `name IN (...)`."""
    expr = conjunct.get("A_Expr")
    if expr is None or [n.get("String", {}).get("sval") for n in expr.get("name", [])] != ["="]:
        return None
    left, right = expr.get("lexpr") or {}, expr.get("rexpr") or {}
    if expr.get("kind") == "AEXPR_OP":
        if _ref(left) not in refs:
            left, right = right, left
        value = _string(right)
        return frozenset({value}) if _ref(left) in refs and value is not None else None
    if expr.get("kind") == "AEXPR_IN" and _ref(left) in refs:
        values = [_string(item) for item in (right.get("List") or {}).get("items", [])]
        if values and all(v is not None for v in values):
            return frozenset(v for v in values if v is not None)
    return None
