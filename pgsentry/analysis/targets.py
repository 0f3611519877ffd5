"""Which column references in a DELETE / UPDATE WHERE (MERGE ON) can denote the target row.

Owns `Scope` (the FROM items and code variables a reference may resolve to), `dml_scope`,
`select_scope`, `refers_to_target` and `depends_on_target`. A condition restricts the
target's rows only if it depends on the target row; this module says whether it can.

Resolution follows PostgreSQL's, and where pgsentry cannot see enough to be sure it picks
"not the target" (so the WHERE counts as restricting nothing and a policy on
tautological WHEREs applies; the writer's fix is to qualify the target's columns):

- A name of a PL/pgSQL variable, parameter, block label or of the function itself, of an
  SQL function's parameter, or a rule action's NEW / OLD (`Scope.variables`) is never the
  target: PL/pgSQL resolves it to the variable (or fails, under the default
  variable_conflict = error); in an SQL function a target column of the same name would
  win, but pgsentry cannot see the table's columns, so the parameter is assumed.
- `q.col` where q is one of `Scope.variables` (a record variable, a block label, the
  function's name): the variable, even when a FROM item is also named q. PL/pgSQL's
  variable_conflict = use_variable (a `#variable_conflict` line in the body, or the
  plpgsql.variable_conflict setting, which may be set anywhere) resolves it so, and the
  default (error) refuses to run it: never the target.
- `q.col` (also `schema.q.col`): the FROM item named q (its alias, or its relation name),
  searched from the innermost query level outwards; the target iff that item is the
  target. When no FROM item is named q, q is a composite column, read like an
  unqualified `q`.
- Unqualified `col`: a name that is also another FROM item's name may be a whole-row
  reference to it: not the target. Otherwise the first query level, from the innermost,
  with an item that has or may have a column `col` decides: the target iff every such
  item there is the target. Items whose column names are known (VALUES, subqueries with
  named output columns, alias column lists that cover every column) have only those;
  plain tables, functions, CTEs and the like may have any column. DECISION: so
  `DELETE FROM t USING u WHERE flag` does not count as restricting t: `flag` may be u's
  column, and then every row of t goes as soon as one u row matches. Qualify:
  `WHERE t.flag`. Inside a subquery, an unqualified name its own FROM items may have is
  theirs (PostgreSQL resolves the innermost level first), so a correlated reference to
  the target must be one the subquery cannot claim, or be qualified.
- In ORDER BY / GROUP BY / DISTINCT ON, a bare name may denote an output column of the
  same SELECT: not the target.

Works on libpg_query's JSON parse tree (dicts). Must not do I/O or import pglast objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Node = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Source:
    """A FROM item: the names it is referenced by; its column names, None if unknown."""

    names: frozenset[str]
    columns: frozenset[str] | None
    target: bool = False
    relation: str | None = None  # the table's own name, for a plain table (self-joins)


@dataclass(frozen=True, slots=True)
class Scope:
    """Query levels (innermost first) and the code variables in scope."""

    levels: tuple[tuple[Source, ...], ...]
    variables: frozenset[str] = frozenset()

    def within(self, level: tuple[Source, ...]) -> Scope:
        return Scope((level, *self.levels), self.variables)

    def target_names(self) -> frozenset[str]:
        return frozenset(n for lvl in self.levels for s in lvl if s.target for n in s.names)


def target_source(relation: Node | None) -> Source:
    """The DML target (a RangeVar field): its relation name and alias."""
    rel = relation or {}
    names = {str(rel.get("relname", ""))}
    alias = (rel.get("alias") or {}).get("aliasname")
    if alias:
        names.add(str(alias))
    return Source(frozenset(names), None, True, str(rel.get("relname", "")) or None)


def dml_scope(relation: Node | None, others: list[Node], variables: frozenset[str]) -> Scope:
    """Scope of a DML's WHERE / ON: the target, its USING / FROM / source items."""
    level = (target_source(relation), *sources_of(others))
    return Scope((level,), variables)


def select_scope(sel: Node, outer: Scope) -> Scope:
    """The scope inside a SELECT (the fields of a SelectStmt): its FROM items, then `outer`."""
    return outer.within(sources_of(sel.get("fromClause") or []))


def sources_of(items: list[Node]) -> tuple[Source, ...]:
    out: list[Source] = []
    for item in items:
        _add_source(item, out)
    return tuple(out)


def _alias(n: Node) -> tuple[str | None, list[str]]:
    alias = n.get("alias") or {}
    cols = [str(c.get("String", {}).get("sval", "")) for c in alias.get("colnames") or []]
    name = alias.get("aliasname")
    return (str(name) if name else None), cols


def _add_source(item: Node, out: list[Source]) -> None:
    if not isinstance(item, dict) or len(item) != 1:
        out.append(Source(frozenset(), None))
        return
    ((kind, n),) = item.items()
    name, colnames = _alias(n)
    if kind == "RangeVar":
        relname = str(n.get("relname", ""))
        out.append(Source(frozenset({name or relname}), None, relation=relname or None))
    elif kind == "RangeTableSample":
        _add_source(n.get("relation") or {}, out)
    elif kind == "JoinExpr":
        _add_source(n.get("larg") or {}, out)
        _add_source(n.get("rarg") or {}, out)
        if name:
            out.append(Source(frozenset({name}), None))
    elif kind == "RangeSubselect":
        sub = (n.get("subquery") or {}).get("SelectStmt") or {}
        cols = _output_names(sub)
        if cols is not None:
            cols[: len(colnames)] = colnames
        known = None if cols is None or None in cols else frozenset(str(c) for c in cols)
        out.append(Source(frozenset({name} if name else ()), known))
    elif kind == "RangeFunction" and not name:
        out.append(Source(frozenset(_function_names(n)), None))
    else:  # functions, XMLTABLE, JSON_TABLE ...: columns not known
        out.append(Source(frozenset({name} if name else ()), None))


def _function_names(n: Node) -> set[str]:
    names: set[str] = set()
    for f in n.get("functions") or []:
        for x in (f.get("List") or {}).get("items") or []:
            fn = (x or {}).get("FuncCall", {}).get("funcname") or []
            if fn:
                names.add(str(fn[-1].get("String", {}).get("sval", "")))
    return names


def _output_names(sel: Node) -> list[str | None] | None:
    """Output column names of a SELECT; None when their number is unknown (`*`)."""
    if sel.get("op", "SETOP_NONE") != "SETOP_NONE":
        return _output_names(sel.get("larg") or {})
    values = sel.get("valuesLists")
    if values:
        row = (values[0].get("List") or {}).get("items") or []
        return [f"column{i + 1}" for i in range(len(row))]
    out: list[str | None] = []
    for t in sel.get("targetList") or []:
        rt = t.get("ResTarget", {})
        val = rt.get("val") or {}
        if rt.get("name"):
            out.append(str(rt["name"]))
        elif "ColumnRef" in val:
            last = fields(val["ColumnRef"])[-1:]
            if last == ["*"] or not last:
                return None
            out.append(last[0])
        elif "FuncCall" in val:
            fn = val["FuncCall"].get("funcname") or [{}]
            out.append(str(fn[-1].get("String", {}).get("sval", "")) or None)
        elif "A_Const" in val or "ParamRef" in val:  # alike: one shape (analyzer.py)
            out.append("?column?")
        else:
            out.append(None)  # a name pgsentry does not derive: unknown
    return out


def fields(ref: Node) -> list[str]:
    """The name parts of a ColumnRef; `*` for A_Star."""
    return [
        str(f["String"].get("sval", "")) if "String" in f else "*" for f in ref.get("fields", [])
    ]


# --- resolution ---------------------------------------------------------------------------


def refers_to_target(parts: list[str], scope: Scope) -> bool:
    """True if the ColumnRef with these name parts may denote a column of the target row."""
    if not parts:
        return False
    if len(parts) == 1:
        return _unqualified(parts[0], scope)
    if parts[0] in scope.variables:
        # record.field, label.variable, function.parameter: with variable_conflict =
        # use_variable (a `#variable_conflict` line, or the plpgsql.variable_conflict
        # setting, which any session may set) PL/pgSQL resolves it to the variable even
        # when a FROM item has the same name, so it never counts as the target.
        return False
    # table.col[.field], schema.table.col, db.schema.table.col: the innermost FROM item
    # named by a qualifier position decides; all readings must agree on "target".
    found: list[bool] = []
    for k in range(min(3, len(parts) - 1)):
        src = _named(parts[k], scope)
        if src is not None:
            found.append(src.target)
    if found:
        return all(found)
    return _unqualified(parts[0], scope)  # composite column .field


def qualified_source(ref: Node, scope: Scope) -> tuple[Source, str] | None:
    """For `q.col`: the FROM item q names and the column, if q names one."""
    parts = fields(ref)
    if len(parts) != 2 or parts[1] == "*" or parts[0] in scope.variables:
        return None
    src = _named(parts[0], scope)
    return None if src is None else (src, parts[1])


def _named(name: str, scope: Scope) -> Source | None:
    for level in scope.levels:
        for s in level:
            if name in s.names:
                return s
    return None


def _unqualified(name: str, scope: Scope) -> bool:
    if name == "*" or name in scope.variables:
        return False
    for level in scope.levels:
        for s in level:
            if not s.target and name in s.names:
                return False  # maybe a whole-row reference to another item
    for level in scope.levels:
        candidates = [s for s in level if s.columns is None or name in s.columns]
        if candidates:
            return all(s.target for s in candidates)
    return False


_OUTPUT_NAMED = frozenset({"sortClause", "groupClause", "distinctClause"})
_OWN = frozenset({"fromClause", "withClause", "larg", "rarg"}) | _OUTPUT_NAMED


def depends_on_target(node: Any, scope: Scope) -> bool:
    """True if some column reference in the expression may denote the target row."""
    if isinstance(node, dict):
        if len(node) == 1:
            ((key, inner),) = node.items()
            if key == "ColumnRef":
                return refers_to_target(fields(inner), scope)
            if key == "SelectStmt":
                return select_depends(inner, scope)
        children: Iterable[Any] = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return False
    for child in children:  # a loop, not any(): this runs for every node of a WHERE
        if isinstance(child, dict | list) and depends_on_target(child, scope):
            return True
    return False


def select_depends(sel: Node, scope: Scope) -> bool:
    """True if a SELECT (a subquery of the condition) reads the target row."""
    wc = sel.get("withClause") or {}
    for cte in wc.get("ctes") or []:
        if depends_on_target((cte.get("CommonTableExpr") or {}).get("ctequery"), scope):
            return True
    if sel.get("op", "SETOP_NONE") != "SETOP_NONE":
        return select_depends(sel.get("larg") or {}, scope) or select_depends(
            sel.get("rarg") or {}, scope
        )
    # FROM items' own expressions see their siblings too (LATERAL): the conservative side.
    inner = select_scope(sel, scope)
    if any(depends_on_target(v, inner) for k, v in sel.items() if k not in _OWN):
        return True
    if depends_on_target(sel.get("fromClause"), inner):
        return True
    outputs = _output_names(sel)
    named = frozenset(n for n in outputs or () if n is not None)
    by_output = inner.within((Source(frozenset(), named if outputs is not None else None),))
    return any(depends_on_target(sel.get(k), by_output) for k in _OUTPUT_NAMED)
