"""Root statements: the facts of each kind of statement a text may hold.

Owns `ROOTS` (statement node -> its handler), `SIMPLE` (statement nodes whose facts are
their kind and the relations in them) and `kind_by_prefix` for the rest: DML and its WHERE
judgement, TRUNCATE, DROP, COPY, EXPLAIN ANALYZE, PREPARE / EXECUTE / DEALLOCATE /
DISCARD, SET / RESET, transactions, rules, views, DO and function bodies (via `bodies`),
GRANT, roles and named objects. INSERT / ON CONFLICT is judged in `upsert`; ALTER TABLE,
policies, ALTER DOMAIN, ALTER EVENT TRIGGER and BYPASSRLS in `alter`; writes to system
catalogs in `catalogs`. Must not cache, know who is asking, or do I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pgsentry.analysis import alter, upsert
from pgsentry.analysis import kinds as K
from pgsentry.analysis.catalogs import is_pg_settings, updatable_base, view_query
from pgsentry.analysis.collector import (
    SKIP_WITH,
    Collector,
    constant_arg,
    dangerous_set,
    handle_execute,
    on_off,
)
from pgsentry.analysis.facts import Relation, StatementFacts, WhereClause
from pgsentry.analysis.functions import SET_CONFIG
from pgsentry.analysis.where import classify_where

Node = dict[str, Any]


def kind_by_prefix(key: str) -> str:
    for prefix, kind in (
        ("Create", K.CREATE_OTHER),
        ("Alter", K.ALTER_OTHER),
        ("Drop", K.DROP_OTHER),
    ):
        if key.startswith(prefix):
            return kind
    return K.OTHER


# --- root statements ----------------------------------------------------------------------

RootHandler = Callable[[Collector, Node, str, str, int], StatementFacts]


def _r_select(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    c.select(n, c.scope)
    return c.facts(K.CREATE_TABLE_AS if n.get("intoClause") else K.SELECT, origin, text)


def _r_dml(kind: str, where_field: str | None) -> RootHandler:
    def handler(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
        inner = c.with_scope(n, c.scope)
        c.walk_except(n, inner, SKIP_WITH)
        where: WhereClause | None = None
        if where_field is not None:
            where = classify_where(
                n.get(where_field),
                n.get("relation"),
                c.run.sens,
                others=_other_sources(n),
                variables=c.run.variables | (_RULE_ROWS if origin == "rule_action" else set()),
            )
            if kind == K.MERGE and where == WhereClause.MISSING:
                where = WhereClause.PRESENT
        if kind == K.UPDATE and is_pg_settings(n.get("relation")):
            c.add_function(SET_CONFIG)  # its rule calls set_config(name, setting)
        return c.facts(kind, origin, text, where=where)

    return handler


_RULE_ROWS = frozenset({"new", "old"})  # a rule action's NEW / OLD rows: not its target


def _other_sources(n: Node) -> list[Node]:
    """A DML's FROM items besides its target: DELETE USING, UPDATE FROM, MERGE USING."""
    source = n.get("sourceRelation")
    return [*n.get("usingClause", []), *n.get("fromClause", []), *([source] if source else [])]


def _r_truncate(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    c.walk(n.get("relations", []), frozenset())
    cascade = n.get("behavior") == "DROP_CASCADE"
    return c.facts(K.TRUNCATE, origin, text, cascade=cascade)


_DROP_KINDS = {
    "OBJECT_TABLE": K.DROP_TABLE,
    "OBJECT_FOREIGN_TABLE": K.DROP_TABLE,
    "OBJECT_SCHEMA": K.DROP_SCHEMA,
    "OBJECT_INDEX": K.DROP_INDEX,
    "OBJECT_VIEW": K.DROP_VIEW,
    "OBJECT_MATVIEW": K.DROP_MATERIALIZED_VIEW,
    "OBJECT_SEQUENCE": K.DROP_SEQUENCE,
    "OBJECT_FUNCTION": K.DROP_FUNCTION,
    "OBJECT_ROUTINE": K.DROP_FUNCTION,
    "OBJECT_AGGREGATE": K.DROP_FUNCTION,
    "OBJECT_PROCEDURE": K.DROP_PROCEDURE,
    "OBJECT_TRIGGER": K.DROP_TRIGGER,
    "OBJECT_EVENT_TRIGGER": K.DROP_TRIGGER,
    "OBJECT_POLICY": K.DROP_POLICY,
    "OBJECT_EXTENSION": K.DROP_EXTENSION,
    "OBJECT_TYPE": K.DROP_TYPE,
    "OBJECT_DOMAIN": K.DROP_TYPE,
    "OBJECT_RULE": K.DROP_RULE,
}
_RELATION_OBJECTS = frozenset(
    {
        "OBJECT_TABLE",
        "OBJECT_FOREIGN_TABLE",
        "OBJECT_INDEX",
        "OBJECT_VIEW",
        "OBJECT_MATVIEW",
        "OBJECT_SEQUENCE",
    }
)
_ON_TABLE_OBJECTS = frozenset({"OBJECT_TRIGGER", "OBJECT_POLICY", "OBJECT_RULE"})


def _names(items: list[Node]) -> list[str]:
    return [str(i.get("String", {}).get("sval", "")) for i in items if "String" in i]


def _r_drop(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    rtype = n.get("removeType", "")
    for obj in n.get("objects", []):
        if "List" in obj:
            parts = _names(obj["List"].get("items", []))
        elif "String" in obj:
            parts = _names([obj])
        elif "ObjectWithArgs" in obj:
            parts = _names(obj["ObjectWithArgs"].get("objname", []))
        elif "TypeName" in obj:
            parts = _names(obj["TypeName"].get("names", []))
        else:
            c.walk(obj, frozenset())
            continue
        if not parts:
            continue
        if rtype in _RELATION_OBJECTS:
            c.relations[Relation(parts[-2] if len(parts) > 1 else None, parts[-1])] = None
        elif rtype in _ON_TABLE_OBJECTS and len(parts) > 1:
            table = parts[:-1]
            c.relations[Relation(table[-2] if len(table) > 1 else None, table[-1])] = None
            c.objects[parts[-1]] = None
        else:
            c.objects[".".join(parts)] = None
    kind = _DROP_KINDS.get(rtype, K.DROP_OTHER)
    return c.facts(kind, origin, text, cascade=n.get("behavior") == "DROP_CASCADE")


def _r_copy(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    c.nest_origin = "copy"
    c.walk(n, c.scope)
    is_from = bool(n.get("is_from"))
    if n.get("is_program"):
        kind = K.COPY_FROM_PROGRAM if is_from else K.COPY_TO_PROGRAM
    elif n.get("filename") is not None:
        kind = K.COPY_FROM_FILE if is_from else K.COPY_TO_FILE
    else:
        kind = K.COPY_FROM if is_from else K.COPY_TO
    return c.facts(kind, origin, text)


def _option_on(options: list[Node], name: str) -> bool:
    """True unless every `name` option is clearly false (anything doubtful counts as on)."""
    on = False
    for o in options:
        d = o.get("DefElem", {})
        if d.get("defname") != name:
            continue
        arg = d.get("arg") or {}
        if "Integer" in arg:
            off = arg["Integer"].get("ival", 0) == 0
        elif "Boolean" in arg:
            off = not arg["Boolean"].get("boolval", False)
        elif "String" in arg:
            off = str(arg["String"].get("sval", "")).lower() in ("false", "off")
        else:
            off = False
        on = on or not off
    return on


def _r_explain(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    if _option_on(n.get("options", []), "analyze"):
        c.nested.append((n["query"], "explain", c.scope))
    return c.facts(K.EXPLAIN, origin, text)


def _r_prepare(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    name = str(n.get("name", ""))
    c.run.effect("prepare", name)
    c.objects[name] = None
    c.nested.append((n["query"], "prepare", c.scope))
    return c.facts(K.PREPARE, origin, text)


def _r_execute(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    handle_execute(c, n, c.scope)
    return c.facts(K.EXECUTE, origin, text)


def _r_deallocate(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    name = "*" if n.get("isall") or not n.get("name") else str(n["name"])
    c.run.effect("deallocate", name)
    return c.facts(K.DEALLOCATE, origin, text)


def _r_discard(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    target = str(n.get("target", "DISCARD_ALL")).removeprefix("DISCARD_").lower()
    c.run.effect("discard", target)
    return c.facts(K.DISCARD, origin, text)


def _r_varset(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    vkind = n.get("kind", "")
    name = str(n.get("name", "")).lower()
    if vkind == "VAR_RESET_ALL":
        c.run.effect("reset", "all")
        c.run.effect("set_scs", "default")
        return c.facts(K.RESET, origin, text)
    if vkind == "VAR_SET_MULTI":  # SET TRANSACTION / SESSION CHARACTERISTICS
        return c.facts(K.SET, origin, text)
    resetting = vkind in ("VAR_RESET", "VAR_SET_DEFAULT")
    c.run.effect("reset" if vkind == "VAR_RESET" else "set", name)
    if name == "standard_conforming_strings":
        if resetting:
            c.run.effect("set_scs", "default")
        else:
            args = n.get("args", [])
            c.run.effect("set_scs", on_off(constant_arg(args, 0) if len(args) == 1 else None))
    if not resetting and dangerous_set(n):
        c.add_function(SET_CONFIG)
    if vkind == "VAR_RESET":
        return c.facts(K.RESET, origin, text)
    if name in ("role", "session_authorization"):
        return c.facts(K.SET_ROLE, origin, text)
    return c.facts(K.SET, origin, text)


_TRANSACTION_KINDS = {
    "TRANS_STMT_BEGIN": K.BEGIN,
    "TRANS_STMT_START": K.BEGIN,
    "TRANS_STMT_COMMIT": K.COMMIT,
    "TRANS_STMT_ROLLBACK": K.ROLLBACK,
    "TRANS_STMT_SAVEPOINT": K.SAVEPOINT,
    "TRANS_STMT_RELEASE": K.RELEASE_SAVEPOINT,
    "TRANS_STMT_ROLLBACK_TO": K.ROLLBACK_TO_SAVEPOINT,
    "TRANS_STMT_PREPARE": K.PREPARE_TRANSACTION,
    "TRANS_STMT_COMMIT_PREPARED": K.COMMIT_PREPARED,
    "TRANS_STMT_ROLLBACK_PREPARED": K.ROLLBACK_PREPARED,
}


def _r_transaction(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    return c.facts(_TRANSACTION_KINDS.get(n.get("kind", ""), K.OTHER), origin, text)


def _r_rule(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    c.walk_except(n, c.scope, frozenset({"actions"}))
    c.objects[str(n.get("rulename", ""))] = None
    _view_over_pg_settings(c, "RuleStmt", n)
    for action in n.get("actions", []):
        c.nested.append((action, "rule_action", frozenset()))
    return c.facts(K.CREATE_RULE, origin, text)


def _r_view(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    c.walk(n, c.scope)
    _view_over_pg_settings(c, "ViewStmt", n)
    return c.facts(K.CREATE_VIEW, origin, text)


def _view_over_pg_settings(c: Collector, key: str, n: Node) -> None:
    """A view PostgreSQL may update through to pg_settings (catalogs.updatable_base): an
    UPDATE of it runs pg_settings' rule, set_config(name, setting), later."""
    sel = view_query(key, n)
    if sel is not None and is_pg_settings(updatable_base(sel)):
        c.add_function(SET_CONFIG)


def _r_do(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    from pgsentry.analysis.bodies import do_block

    do_block(c, n, text, depth)
    return c.facts(K.DO_BLOCK, origin, text)


def _r_function(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    from pgsentry.analysis.bodies import function_body

    c.objects[".".join(_names(n.get("funcname", [])))] = None
    c.walk_except(n, c.scope, frozenset({"options", "sql_body", "funcname"}))
    for o in n.get("options", []):  # SET clauses, not the body
        d = o.get("DefElem", {})
        if d.get("defname") == "set":
            c.walk(d.get("arg"), c.scope)
    function_body(c, n, text, depth)
    kind = K.CREATE_OR_REPLACE_FUNCTION if n.get("replace") else K.CREATE_FUNCTION
    return c.facts(kind, origin, text)


def _r_grant(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    c.walk(n, frozenset())
    return c.facts(K.GRANT if n.get("is_grant") else K.REVOKE, origin, text)


def _r_roles(kind: str, field: str) -> RootHandler:
    def handler(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
        value = n.get(field)
        specs = value if isinstance(value, list) else [value] if value else []
        for spec in specs:
            role = spec.get("RoleSpec", spec) if isinstance(spec, dict) else {}
            if role.get("rolename"):
                c.objects[str(role["rolename"])] = None
        if isinstance(value, str):
            c.objects[value] = None
        c.walk(n, c.scope)
        mine = c.facts(kind, origin, text, cascade=n.get("behavior") == "DROP_CASCADE")
        c.extra.extend(alter.bypass_rls(n, mine))
        return mine

    return handler


def _r_fetch(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    return c.facts(K.FETCH, origin, text)


def _r_vacuum(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
    c.walk(n, c.scope)
    return c.facts(K.VACUUM if n.get("is_vacuumcmd") else K.ANALYZE, origin, text)


def _r_named(kind: str, field: str) -> RootHandler:
    def handler(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
        if n.get(field):
            c.objects[str(n[field])] = None
        c.walk(n, c.scope)
        return c.facts(kind, origin, text)

    return handler


ROOTS: dict[str, RootHandler] = {
    "SelectStmt": _r_select,
    "InsertStmt": upsert.insert,
    "UpdateStmt": _r_dml(K.UPDATE, "whereClause"),
    "DeleteStmt": _r_dml(K.DELETE, "whereClause"),
    "MergeStmt": _r_dml(K.MERGE, "joinCondition"),
    "TruncateStmt": _r_truncate,
    "DropStmt": _r_drop,
    "AlterTableStmt": alter.alter_table,
    "CreatePolicyStmt": alter.create_policy,
    "AlterPolicyStmt": alter.alter_policy,
    "CopyStmt": _r_copy,
    "ExplainStmt": _r_explain,
    "PrepareStmt": _r_prepare,
    "ExecuteStmt": _r_execute,
    "DeallocateStmt": _r_deallocate,
    "DiscardStmt": _r_discard,
    "VariableSetStmt": _r_varset,
    "TransactionStmt": _r_transaction,
    "RuleStmt": _r_rule,
    "DoStmt": _r_do,
    "CreateFunctionStmt": _r_function,
    "GrantStmt": _r_grant,
    "GrantRoleStmt": _r_grant,
    "DropdbStmt": _r_roles(K.DROP_DATABASE, "dbname"),
    "DropRoleStmt": _r_roles(K.DROP_ROLE, "roles"),
    "DropOwnedStmt": _r_roles(K.DROP_OWNED, "roles"),
    "ReassignOwnedStmt": _r_roles(K.REASSIGN_OWNED, "roles"),
    "CreateRoleStmt": _r_roles(K.CREATE_ROLE, "role"),
    "AlterRoleStmt": _r_roles(K.ALTER_ROLE, "role"),
    "AlterDomainStmt": alter.alter_domain,
    "AlterEventTrigStmt": alter.alter_event_trigger,
    "ViewStmt": _r_view,
    "AlterRoleSetStmt": _r_roles(K.ALTER_ROLE, "role"),
    "FetchStmt": _r_fetch,
    "VacuumStmt": _r_vacuum,
    "CreateExtensionStmt": _r_named(K.CREATE_EXTENSION, "extname"),
    "CreateTrigStmt": _r_named(K.CREATE_TRIGGER, "trigname"),
    "CreateEventTrigStmt": _r_named(K.CREATE_TRIGGER, "trigname"),
    "CreatedbStmt": _r_named(K.CREATE_OTHER, "dbname"),
    "CreateSchemaStmt": _r_named(K.CREATE_OTHER, "schemaname"),
    "ListenStmt": _r_named(K.LISTEN, "conditionname"),
    "UnlistenStmt": _r_named(K.UNLISTEN, "conditionname"),
    "NotifyStmt": _r_named(K.NOTIFY, "conditionname"),
    "LoadStmt": _r_named(K.LOAD, "filename"),
    "DeclareCursorStmt": _r_named(K.DECLARE_CURSOR, "portalname"),
    "ClosePortalStmt": _r_named(K.CLOSE_CURSOR, "portalname"),
    "IndexStmt": _r_named(K.CREATE_INDEX, "idxname"),
}

SIMPLE: dict[str, str] = {
    "CreateStmt": K.CREATE_TABLE,
    "CreateTableAsStmt": K.CREATE_TABLE_AS,
    "RenameStmt": K.RENAME,
    "AlterSystemStmt": K.ALTER_SYSTEM,
    "VariableShowStmt": K.SHOW,
    "CallStmt": K.CALL,
    "ReindexStmt": K.REINDEX,
    "ClusterStmt": K.CLUSTER,
    "LockStmt": K.LOCK,
    "CheckPointStmt": K.CHECKPOINT,
    "RefreshMatViewStmt": K.REFRESH_MATERIALIZED_VIEW,
    "CommentStmt": K.COMMENT,
    "SecLabelStmt": K.COMMENT,
    "DropTableSpaceStmt": K.DROP_OTHER,
    "DropSubscriptionStmt": K.DROP_OTHER,
    "DropUserMappingStmt": K.DROP_OTHER,
}
