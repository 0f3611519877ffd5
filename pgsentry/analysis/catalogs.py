"""Writes to system catalogs, and views that PostgreSQL could write a catalog through.

Owns `catalog_writes`, `is_catalog`, `is_pg_settings` and `updatable_base`. A superuser may
change the catalogs with plain DML (`UPDATE pg_trigger SET tgenabled = 'D'`, `DELETE FROM
pg_class ...`, `UPDATE pg_proc SET prosrc = ...`), which disables triggers, loses tables or
rewrites functions without any DDL in sight. Such a statement is reported as a further
fact, kind `write_catalog`, with the statement's own origin and the catalogs as relations,
following it (as `upsert` reports the UPDATE of ON CONFLICT): INSERT / UPDATE / DELETE /
MERGE / COPY FROM whose target, or TRUNCATE one of whose tables, is a catalog. A relation
read elsewhere in the statement (a subquery, USING, FROM) is not written: reading catalogs
stays an ordinary `select`.

A catalog is a relation in schema pg_catalog or pg_toast (or a pg_toast_temp_N schema), or
an unqualified name that starts with `pg_`: pg_catalog is searched first unless a session
places it later in search_path explicitly, and a table of one's own named pg_* is rare, so
reading it as a catalog is the stricter side. `pg_settings` is not reported here: writing it
calls set_config, which `statements` flags.

A view whose query PostgreSQL may update through (an automatically updatable view: one
FROM item, a table or view, and none of WITH, DISTINCT, GROUP BY, HAVING, a window, LIMIT /
OFFSET, a set operation or an aggregate call written as such) passes INSERT / UPDATE /
DELETE to that item later, so CREATE [OR REPLACE] VIEW (and CREATE RULE ... ON SELECT, which
makes a table a view in older servers) over a catalog is reported as a `write_catalog` too.
Views that join catalogs, as monitoring views do, are not updatable and stay `create_view`.
Must not cache or know who is asking.
"""

from __future__ import annotations

from typing import Any

from pgsentry.analysis import kinds as K
from pgsentry.analysis.facts import Relation, StatementFacts

Node = dict[str, Any]

_TARGET_OF = {
    "InsertStmt": "relation",
    "UpdateStmt": "relation",
    "DeleteStmt": "relation",
    "MergeStmt": "relation",
}
# Any of these in a view's query makes it not automatically updatable.
_NOT_UPDATABLE = (
    "withClause",
    "distinctClause",
    "groupClause",
    "havingClause",
    "windowClause",
    "limitCount",
    "limitOffset",
    "valuesLists",
)
_AGGREGATE_MARKS = ("agg_star", "agg_distinct", "agg_filter", "agg_order", "over")


def is_catalog(rv: Node | None) -> bool:
    """A RangeVar (its fields) that names a system catalog (see the module docstring)."""
    if not rv:
        return False
    schema = rv.get("schemaname")
    name = str(rv.get("relname", ""))
    if schema is None:
        return name.startswith("pg_")
    return schema == "pg_catalog" or str(schema).startswith("pg_toast")


def is_pg_settings(rv: Node | None) -> bool:
    """The pg_settings view (UPDATE of it changes settings, any of them)."""
    return (
        rv is not None
        and rv.get("relname") == "pg_settings"
        and rv.get("schemaname") in (None, "pg_catalog")
    )


def catalog_writes(key: str, n: Node, origin: str, text: str) -> list[StatementFacts]:
    """The `write_catalog` fact of statement `n` (its node type `key`), if it has one."""
    written = [rv for rv in _written(key, n) if is_catalog(rv) and not is_pg_settings(rv)]
    if not written:
        return []
    relations = tuple(dict.fromkeys(_relation(rv) for rv in written))
    return [StatementFacts(kind=K.WRITE_CATALOG, origin=origin, relations=relations, text=text)]


def view_query(key: str, n: Node) -> Node | None:
    """The SelectStmt fields of the query a view statement defines, if `n` is one."""
    if key == "ViewStmt":
        query = n.get("query") or {}
    elif key == "RuleStmt" and n.get("event") == "CMD_SELECT" and len(n.get("actions") or []) == 1:
        query = n["actions"][0]
    else:
        return None
    sel = query.get("SelectStmt") if isinstance(query, dict) else None
    return sel if isinstance(sel, dict) else None


def updatable_base(sel: Node) -> Node | None:
    """The RangeVar an automatically updatable view over query `sel` writes through;
    None when the query cannot be updated through (read conservatively: may be -> base)."""
    if sel.get("op", "SETOP_NONE") != "SETOP_NONE" or any(sel.get(k) for k in _NOT_UPDATABLE):
        return None
    items = sel.get("fromClause") or []
    if len(items) != 1 or not isinstance(items[0], dict):
        return None
    item = items[0]
    if "RangeTableSample" in item:
        item = item["RangeTableSample"].get("relation") or {}
    rv = item.get("RangeVar")
    if not isinstance(rv, dict) or _aggregates(sel.get("targetList")):
        return None
    return rv


def _written(key: str, n: Node) -> list[Node]:
    field = _TARGET_OF.get(key)
    if field is not None:
        rv = n.get(field)
        return [rv] if isinstance(rv, dict) else []
    if key == "TruncateStmt":
        return [r["RangeVar"] for r in n.get("relations") or [] if "RangeVar" in r]
    if key == "CopyStmt":
        rv = n.get("relation")
        return [rv] if n.get("is_from") and isinstance(rv, dict) else []
    sel = view_query(key, n)
    base = updatable_base(sel) if sel is not None else None
    return [base] if base is not None else []


def _aggregates(v: Any) -> bool:
    """An aggregate or window call recognisable as such (count(*), DISTINCT, FILTER, OVER)."""
    if isinstance(v, dict):
        call = v.get("FuncCall")
        if isinstance(call, dict) and any(call.get(m) for m in _AGGREGATE_MARKS):
            return True
        return any(
            _aggregates(x) for k, x in v.items() if k != "SubLink" and isinstance(x, dict | list)
        )
    if isinstance(v, list):
        return any(_aggregates(x) for x in v)
    return False


def _relation(rv: Node) -> Relation:
    return Relation(rv.get("schemaname"), str(rv.get("relname", "")))
