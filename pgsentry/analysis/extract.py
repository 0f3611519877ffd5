"""Turns libpg_query's JSON parse tree into `StatementFacts` (the slow, complete path).

Owns `Run.analyze_text`: per statement its kind, relations (CTE names are not relations),
WHERE judgement, cascade, flagged functions, named objects, session effects, and the nested
statements (data-modifying CTEs, PREPARE, EXPLAIN ANALYZE, COPY (...), CREATE RULE actions,
DO / function bodies via `bodies`). INSERT / ON CONFLICT is judged in `upsert`, ALTER TABLE
and policies in `alter`, functions bound by name in DDL in `bindings`, file_fdw options in
`foreign`. Walks plain dicts (`trees`), which is ~10x cheaper than pglast's AST
objects. Must not cache, know who is asking, or do I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pglast import parser

from pgsentry.analysis import alter, upsert
from pgsentry.analysis import kinds as K
from pgsentry.analysis.bindings import bind_functions
from pgsentry.analysis.encodings import unsafe_client_encoding_value
from pgsentry.analysis.facts import Relation, StatementFacts, WhereClause
from pgsentry.analysis.foreign import server_access
from pgsentry.analysis.functions import (
    DANGEROUS_FUNCTIONS,
    DANGEROUS_SETTINGS,
    DYNAMIC_SQL_FUNCTIONS,
    SET_CONFIG,
)
from pgsentry.analysis.settings import is_name_column, settings_named
from pgsentry.analysis.trees import sql_tree
from pgsentry.analysis.where import Sensitivity, classify_where, contains, fold

Node = dict[str, Any]

_DML = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
_LEAVES = frozenset(
    {"String", "A_Const", "ColumnRef", "ParamRef", "A_Star", "Integer", "Float", "Boolean"}
)
_COLUMN = frozenset({"ColumnRef"})
_SETTING_MARKERS = DANGEROUS_SETTINGS.keys() | {"role", "session_authorization"}


class Collector:
    """Facts of one statement while its tree is walked."""

    def __init__(self, run: Run, scope: frozenset[str]) -> None:
        self.run = run
        self.scope = scope
        self.relations: dict[Relation, None] = {}
        self.functions: dict[str, None] = {}
        self.objects: dict[str, None] = {}
        self.dynamic = False
        self.nested: list[tuple[Node, str, frozenset[str]]] = []
        self.extra: list[StatementFacts] = []  # ready-made nested facts (bodies, subcommands)
        self.nest_origin = "cte"
        # Inside a SELECT's target list: that SELECT, when it reads pg_settings (its `name`
        # may then be pinned to constants, see settings.py); None anywhere else.
        self.select_targets: Node | None = None

    # --- generic walk -------------------------------------------------------------------
    def walk(self, v: Any, scope: frozenset[str]) -> None:
        if type(v) is dict:
            if len(v) == 1:
                k = next(iter(v))
                if k[0].isupper():
                    inner = v[k]
                    handler = _HANDLERS.get(k)
                    if handler is not None:
                        handler(self, inner, scope)
                    elif k not in _LEAVES:
                        self.walk(inner, scope)
                    return
            if "relname" in v:  # a RangeVar field (target of a statement): never a CTE
                self.add_rangevar(v)
                return
            if str(v.get("kind", "")).startswith("VAR_"):  # a VariableSetStmt field
                _h_varset(self, v, scope)
                return
            for x in v.values():
                if type(x) is dict or type(x) is list:
                    self.walk(x, scope)
        elif type(v) is list:
            for x in v:
                self.walk(x, scope)

    def walk_except(self, n: Node, scope: frozenset[str], skip: frozenset[str]) -> None:
        for k, x in n.items():
            if k not in skip and (type(x) is dict or type(x) is list):
                self.walk(x, scope)

    def add_rangevar(self, rv: Node) -> None:
        self.relations[Relation(rv.get("schemaname"), rv.get("relname", ""))] = None

    def add_function(self, name: str) -> None:
        self.functions[name] = None
        if name in DYNAMIC_SQL_FUNCTIONS:
            self.dynamic = True

    def with_scope(self, n: Node, scope: frozenset[str]) -> frozenset[str]:
        """Walk the WITH clause of `n`; return the scope its body sees."""
        wc = n.get("withClause")
        if not wc:
            return scope
        ctes = [c.get("CommonTableExpr", {}) for c in wc.get("ctes", [])]
        names = [c.get("ctename", "") for c in ctes]
        full = scope | frozenset(names)
        for i, cte in enumerate(ctes):
            seen = full if wc.get("recursive") else scope | frozenset(names[:i])
            q = cte.get("ctequery") or {}
            if next(iter(q), None) in _DML:
                self.nested.append((q, "cte", seen))
            else:
                self.walk(q, seen)
        return full

    def select(self, n: Node, scope: frozenset[str]) -> None:
        inner = self.with_scope(n, scope)
        outer, self.select_targets = self.select_targets, None
        try:
            if settings_named(n) is None:
                self.walk_except(n, inner, _SKIP_WITH)
                return
            # Its target list runs only on the rows its WHERE kept (see settings.py).
            self.walk_except(n, inner, _SKIP_WITH_TARGETS)
            self.select_targets = n
            self.walk(n.get("targetList", []), inner)
        finally:
            self.select_targets = outer

    def facts(self, kind: str, origin: str, text: str, **kw: Any) -> StatementFacts:
        return StatementFacts(
            kind=kind,
            origin=origin,
            relations=tuple(self.relations),
            dynamic_sql=self.dynamic,
            functions=tuple(self.functions),
            text=text,
            objects=tuple(self.objects),
            **kw,
        )


_SKIP_WITH = frozenset({"withClause"})
_SKIP_WITH_TARGETS = frozenset({"withClause", "targetList"})

# --- handlers for nodes found anywhere in a tree ----------------------------------------


def _h_rangevar(c: Collector, n: Node, scope: frozenset[str]) -> None:
    if "schemaname" not in n and n.get("relname") in scope:
        return  # a CTE reference
    c.add_rangevar(n)


def _h_funccall(c: Collector, n: Node, scope: frozenset[str]) -> None:
    names = n.get("funcname", [])
    name = str(names[-1].get("String", {}).get("sval", "")).lower() if names else ""
    if name == SET_CONFIG:
        _set_config(c, n.get("args", []))
    elif name in DANGEROUS_FUNCTIONS:
        c.add_function(name)
    c.walk_except(n, scope, _SKIP_FUNCNAME)


_SKIP_FUNCNAME = frozenset({"funcname"})


def _set_config(c: Collector, args: list[Node]) -> None:
    c.run.sens.hit = True
    select = c.select_targets
    if args and select is not None and is_name_column(args[0], select):
        # SELECT set_config(name, ...) FROM pg_settings WHERE name = '...' (pg_dump)
        for named in sorted(settings_named(select) or ()):
            _set_config_of(c, named, args)
        return
    setting: Any = None
    if args and not contains(args[0], _COLUMN):
        try:
            setting = fold(args[0])
        except Exception:
            setting = None
    if not isinstance(setting, str):
        c.add_function(SET_CONFIG)
        c.run.effect("set", "*")
        c.run.effect("set_scs", "off")
        return
    _set_config_of(c, setting, args)


def _set_config_of(c: Collector, setting: str, args: list[Node]) -> None:
    """set_config of one known setting."""
    setting = setting.strip().lower()
    if setting in _SETTING_MARKERS or (
        setting == "client_encoding" and unsafe_client_encoding_value(_constant(args, 1))
    ):
        c.add_function(SET_CONFIG)
    c.run.effect("set", setting)
    if setting == "standard_conforming_strings":
        c.run.effect("set_scs", _on_off(_constant(args, 1)))


def _constant(args: list[Node], i: int) -> Any:
    """The value of argument `i` when it folds to a constant, else None."""
    if len(args) <= i or contains(args[i], _COLUMN):
        return None
    try:
        return fold(args[i])
    except Exception:
        return None


def _on_off(value: Any) -> str:
    """'on' only when the value certainly means on; anything doubtful reads as 'off'."""
    if value is True or (isinstance(value, int) and value == 1):
        return "on"
    if isinstance(value, str) and value.strip().lower() in ("on", "true", "yes", "1", "t", "y"):
        return "on"
    return "off"


def _h_select(c: Collector, n: Node, scope: frozenset[str]) -> None:
    c.select(n, scope)


def _h_dml(key: str) -> Callable[[Collector, Node, frozenset[str]], None]:
    def handler(c: Collector, n: Node, scope: frozenset[str]) -> None:
        c.nested.append(({key: n}, c.nest_origin, scope))

    return handler


def _h_varset(c: Collector, n: Node, scope: frozenset[str]) -> None:
    # SET inside ALTER ROLE / DATABASE / SYSTEM / FUNCTION ... SET
    if n.get("kind") != "VAR_RESET" and _dangerous_set(n):
        c.add_function(SET_CONFIG)


def _dangerous_set(n: Node) -> bool:
    """A VariableSetStmt (SET, or the SET of an ALTER) of a setting in DANGEROUS_SETTINGS,
    or of client_encoding to anything but a safe encoding (see encodings.py)."""
    name = str(n.get("name", "")).lower()
    if name in DANGEROUS_SETTINGS:
        return True
    args = n.get("args", [])
    return (
        name == "client_encoding"
        and n.get("kind") == "VAR_SET_VALUE"
        and unsafe_client_encoding_value(_constant(args, 0) if len(args) == 1 else None)
    )


def _h_execute(c: Collector, n: Node, scope: frozenset[str]) -> None:
    c.run.effect("execute", str(n.get("name", "")))
    c.objects[str(n.get("name", ""))] = None
    c.walk(n.get("params", []), scope)


def _h_skip(c: Collector, n: Node, scope: frozenset[str]) -> None:
    return None


_HANDLERS: dict[str, Callable[[Collector, Node, frozenset[str]], None]] = {
    "RangeVar": _h_rangevar,
    "FuncCall": _h_funccall,
    "SelectStmt": _h_select,
    "VariableSetStmt": _h_varset,
    "ExecuteStmt": _h_execute,
    "TypeName": _h_skip,
    **{k: _h_dml(k) for k in _DML},
}


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
        handler = _ROOTS.get(key)
        if handler is None:
            kind = _SIMPLE.get(key) or _by_prefix(key)
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


def _by_prefix(key: str) -> str:
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


def _is_pg_settings(rv: Node | None) -> bool:
    """The pg_settings view (UPDATE of it changes settings, any of them)."""
    return (
        rv is not None
        and rv.get("relname") == "pg_settings"
        and rv.get("schemaname") in (None, "pg_catalog")
    )


def _r_dml(kind: str, where_field: str | None) -> RootHandler:
    def handler(c: Collector, n: Node, origin: str, text: str, depth: int) -> StatementFacts:
        inner = c.with_scope(n, c.scope)
        c.walk_except(n, inner, _SKIP_WITH)
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
        if kind == K.UPDATE and _is_pg_settings(n.get("relation")):
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
    _h_execute(c, n, c.scope)
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
            c.run.effect("set_scs", _on_off(_constant(args, 0) if len(args) == 1 else None))
    if not resetting and _dangerous_set(n):
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
    for action in n.get("actions", []):
        c.nested.append((action, "rule_action", frozenset()))
    return c.facts(K.CREATE_RULE, origin, text)


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
        return c.facts(kind, origin, text, cascade=n.get("behavior") == "DROP_CASCADE")

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


_ROOTS: dict[str, RootHandler] = {
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

_SIMPLE: dict[str, str] = {
    "CreateStmt": K.CREATE_TABLE,
    "ViewStmt": K.CREATE_VIEW,
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
