"""Functions that DDL binds by name, so that they run later without appearing as a call.

Owns `bind_functions`: CREATE OPERATOR (FUNCTION= / PROCEDURE=, RESTRICT=, JOIN=), ALTER
OPERATOR ... SET, CREATE AGGREGATE (SFUNC, FINALFUNC, COMBINEFUNC, ...), CREATE TYPE
(INPUT, OUTPUT, RECEIVE, ...; ranges: SUBTYPE_DIFF, CANONICAL), ALTER TYPE ... SET, CREATE
TEXT SEARCH PARSER / TEMPLATE, CREATE CAST ... WITH FUNCTION, CREATE [EVENT] TRIGGER ...
EXECUTE FUNCTION, CREATE CONVERSION, CREATE OPERATOR CLASS / ALTER OPERATOR FAMILY ...
FUNCTION n name, CREATE TRANSFORM, CREATE LANGUAGE (HANDLER, INLINE, VALIDATOR), CREATE /
ALTER FOREIGN DATA WRAPPER (HANDLER, VALIDATOR), CREATE ACCESS METHOD ... HANDLER, and
ALTER FUNCTION / AGGREGATE / PROCEDURE / ROUTINE name RENAME (the flagged function gets a
name nobody flags). A flagged name found there is reported exactly as a call of it would
be (`Collector.add_function`, which also sets `dynamic_sql` for dblink & co.), so the
rules on `functions` apply. Expressions (DEFAULT, GENERATED, CHECK, index and policy
expressions, USING) hold ordinary calls and are seen by the walk already. Must not cache
or know who is asking.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pgsentry.analysis.functions import DANGEROUS_FUNCTIONS, SET_CONFIG

if TYPE_CHECKING:
    from pgsentry.analysis.collector import Collector

Node = dict[str, Any]

# DefElem names whose value is a function, across the statements that take definitions.
_FUNCTION_OPTIONS = frozenset(
    {
        "function", "procedure", "restrict", "join",  # operator
        "sfunc", "sfunc1", "finalfunc", "combinefunc", "serialfunc", "deserialfunc",
        "msfunc", "minvfunc", "mfinalfunc",  # aggregate
        "input", "output", "receive", "send", "typmod_in", "typmod_out", "analyze",
        "subscript", "subtype_diff", "canonical",  # type, range type
        "start", "gettoken", "end", "headline", "lextypes", "init", "lexize",  # text search
        "handler", "validator",  # foreign data wrapper
    }
)  # fmt: skip
_DEFINITION_FIELDS = {
    "DefineStmt": "definition",
    "AlterOperatorStmt": "options",
    "AlterTypeStmt": "options",
    "CreateRangeStmt": "params",
    "CreateFdwStmt": "func_options",
    "AlterFdwStmt": "func_options",
}
_NAME_FIELDS = {
    "CreateCastStmt": ("func",),
    "CreateTrigStmt": ("funcname",),
    "CreateEventTrigStmt": ("funcname",),
    "CreateConversionStmt": ("func_name",),
    "CreateTransformStmt": ("fromsql", "tosql"),
    "CreatePLangStmt": ("plhandler", "plinline", "plvalidator"),
    "CreateAmStmt": ("handler_name",),
}
_OPCLASS_ITEM_FUNCTION = 2
_FUNCTION_OBJECTS = frozenset(
    {"OBJECT_FUNCTION", "OBJECT_AGGREGATE", "OBJECT_PROCEDURE", "OBJECT_ROUTINE"}
)


def bind_functions(c: Collector, key: str, n: Node) -> None:
    """Report every flagged function statement `n` (of type `key`) binds by name."""
    for name in _bound(key, n):
        if name in DANGEROUS_FUNCTIONS or name == SET_CONFIG:
            c.add_function(name)


def _bound(key: str, n: Node) -> Iterator[str]:
    field = _DEFINITION_FIELDS.get(key)
    if field is not None:
        for item in n.get(field) or []:
            d = item.get("DefElem", {}) if isinstance(item, dict) else {}
            if str(d.get("defname", "")).lower() in _FUNCTION_OPTIONS:
                yield from _last_name(d.get("arg"))
    for f in _NAME_FIELDS.get(key, ()):
        yield from _last_name(n.get(f))
    if key in ("CreateOpClassStmt", "AlterOpFamilyStmt"):
        for item in n.get("items") or []:
            ci = item.get("CreateOpClassItem", {})
            if ci.get("itemtype") == _OPCLASS_ITEM_FUNCTION:
                yield from _last_name(ci.get("name"))
    if key == "RenameStmt" and n.get("renameType") in _FUNCTION_OBJECTS:
        yield from _last_name(n.get("object"))


def _last_name(v: Any) -> Iterator[str]:
    """The unqualified, lower-case name in a function reference (list, TypeName, ...)."""
    if isinstance(v, dict):
        if len(v) == 1:
            ((k, inner),) = v.items()
            if k == "String":
                yield str(inner.get("sval", "")).lower()
                return
            if k in ("TypeName", "ObjectWithArgs", "List"):
                yield from _last_name(inner)
                return
        for field in ("names", "objname", "items"):
            if field in v:
                yield from _last_name(v[field])
                return
    elif isinstance(v, list) and v:
        yield from _last_name(v[-1])
