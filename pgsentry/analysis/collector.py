"""The walk of one statement's parse tree, and what any node in it contributes.

Owns `Collector` (relations, flagged functions, named objects, dynamic code and the nested
statements found while a tree is walked) and the handlers of nodes that may appear
anywhere in a tree: table references (CTE names are not relations), function calls
(set_config of a setting, folded when its name is a constant), SELECTs and their WITH
clauses, data-modifying statements nested in CTEs, SETs inside ALTER ... SET, EXECUTE.
Root statements are judged in `statements`, whole texts in `extract`. Walks the plain
dicts of `trees`; the generic walk runs in C (`_walk.c`) when it is built, with
`py_walk` as its Python twin. Must not cache, know who is asking, or do I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pgsentry import native
from pgsentry.analysis.encodings import unsafe_client_encoding_value
from pgsentry.analysis.facts import Relation, StatementFacts
from pgsentry.analysis.functions import (
    DANGEROUS_FUNCTIONS,
    DANGEROUS_SETTINGS,
    DYNAMIC_SQL_FUNCTIONS,
    FLAGGED_WITH_ARGS,
    SET_CONFIG,
)
from pgsentry.analysis.settings import is_name_column, settings_named
from pgsentry.analysis.where import contains, fold

if TYPE_CHECKING:
    from pgsentry.analysis.extract import Run

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
        """Visit `v` (any value of a tree) and call the handler of every node found.

        The reference, `py_walk`: when the extension `_walk` is built, this method is its C
        twin (same visit in the same order; a hypothesis test compares them)."""
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
                self.walk_except(n, inner, SKIP_WITH)
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


SKIP_WITH = frozenset({"withClause"})
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
    elif name in DANGEROUS_FUNCTIONS and FLAGGED_WITH_ARGS.get(name, -1) in (
        -1,
        len(n.get("args", [])),
    ):
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
        setting == "client_encoding" and unsafe_client_encoding_value(constant_arg(args, 1))
    ):
        c.add_function(SET_CONFIG)
    c.run.effect("set", setting)
    if setting == "standard_conforming_strings":
        c.run.effect("set_scs", on_off(constant_arg(args, 1)))


def constant_arg(args: list[Node], i: int) -> Any:
    """The value of argument `i` when it folds to a constant, else None."""
    if len(args) <= i or contains(args[i], _COLUMN):
        return None
    try:
        return fold(args[i])
    except Exception:
        return None


def on_off(value: Any) -> str:
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
    if n.get("kind") != "VAR_RESET" and dangerous_set(n):
        c.add_function(SET_CONFIG)


def dangerous_set(n: Node) -> bool:
    """A VariableSetStmt (SET, or the SET of an ALTER) of a setting in DANGEROUS_SETTINGS,
    or of client_encoding to anything but a safe encoding (see encodings.py)."""
    name = str(n.get("name", "")).lower()
    if name in DANGEROUS_SETTINGS:
        return True
    args = n.get("args", [])
    return (
        name == "client_encoding"
        and n.get("kind") == "VAR_SET_VALUE"
        and unsafe_client_encoding_value(constant_arg(args, 0) if len(args) == 1 else None)
    )


def handle_execute(c: Collector, n: Node, scope: frozenset[str]) -> None:
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
    "ExecuteStmt": handle_execute,
    "TypeName": _h_skip,
    **{k: _h_dml(k) for k in _DML},
}

py_walk = Collector.walk
_native = native.load("pgsentry.analysis._walk")
if _native is not None:
    _native.configure(_HANDLERS, _LEAVES, _h_varset)
    Collector.walk = _native.method(Collector)  # type: ignore[method-assign]
NATIVE = _native is not None
