"""Code bodies: DO blocks and CREATE FUNCTION / PROCEDURE bodies.

Owns `do_block` and `function_body`. PL/pgSQL is parsed with libpg_query's PL/pgSQL
parser (`parse_plpgsql_json`); every static SQL statement in it becomes a nested fact
(origin "do_block" / "function_body"), expressions contribute their functions and
relations to the enclosing fact, and dynamic code (EXECUTE, FOR ... IN EXECUTE,
OPEN ... FOR EXECUTE, RETURN QUERY EXECUTE) sets `dynamic_sql`. SQL-language bodies are
analysed as SQL. Bodies in any other language, or that cannot be parsed, are opaque:
`dynamic_sql`. While a body is analysed, `Run.variables` holds the names its statements
may use for variables rather than columns (PL/pgSQL variables, parameters, loop variables,
block labels, the function's name; an SQL function's input parameters): the WHERE
judgement does not count them as the target row (see targets.py). Must not cache or know
who is asking.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson
from pglast import parser

from pgsentry.analysis.lexical import lexical_key
from pgsentry.analysis.literals import Refused, check_text, off_reading
from pgsentry.analysis.trees import plpgsql_tree

if TYPE_CHECKING:
    from pgsentry.analysis.collector import Collector

Node = dict[str, Any]

_DYNAMIC_KEYS = frozenset({"PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors", "dynquery"})
_MODE_DEFAULT, _MODE_EXPR = 0, 2
_MODES_ASSIGN = frozenset({3, 4, 5})


def _options(items: list[Node]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        d = item.get("DefElem", {})
        out[str(d.get("defname", ""))] = d.get("arg")
    return out


def _string(arg: Any) -> str | None:
    if isinstance(arg, dict) and "String" in arg:
        return str(arg["String"].get("sval", ""))
    return None


def do_block(c: Collector, n: Node, text: str, depth: int) -> None:
    """Facts of a DO statement's body; `text` is the DO statement's own text."""
    opts = _options(n.get("args", []))
    language = (_string(opts.get("language")) or "plpgsql").lower()
    body = _string(opts.get("as"))
    if language != "plpgsql" or body is None:
        c.dynamic = True
        return
    _plpgsql(c, text, body, "do_block", depth, ())


def function_body(c: Collector, n: Node, text: str, depth: int) -> None:
    """Facts of a CREATE FUNCTION / PROCEDURE body; `text` is the statement's own text."""
    names = [str(x.get("String", {}).get("sval", "")) for x in n.get("funcname", [])][-1:]
    sql_names = names + _sql_parameters(n)
    sql_body = n.get("sql_body")
    if sql_body is not None:  # BEGIN ATOMIC ... END / RETURN expr: already parsed
        with _variables(c, sql_names):
            _sql_body(c, sql_body, text, depth)
        return
    opts = _options(n.get("options", []))
    language = (_string(opts.get("language")) or "").lower()
    as_arg = opts.get("as")
    parts: list[Node] = as_arg.get("List", {}).get("items", []) if isinstance(as_arg, dict) else []
    body = _string(parts[0]) if len(parts) == 1 else None
    if body is None:
        c.dynamic = True  # no body, or object file + symbol (C): opaque
        return
    if language == "plpgsql":
        _plpgsql(c, text, body, "function_body", depth, names)
    elif language == "sql":
        with _variables(c, sql_names):
            _nested_text(c, body, "function_body", depth)
    else:
        c.dynamic = True


_SQL_INPUT_MODES = frozenset(
    {"FUNC_PARAM_IN", "FUNC_PARAM_INOUT", "FUNC_PARAM_VARIADIC", "FUNC_PARAM_DEFAULT"}
)


def _sql_parameters(n: Node) -> list[str]:
    """Names an SQL-language body may use for its parameters (not OUT / TABLE columns)."""
    out: list[str] = []
    for p in n.get("parameters", []):
        fp = p.get("FunctionParameter", {})
        if fp.get("name") and fp.get("mode", "FUNC_PARAM_DEFAULT") in _SQL_INPUT_MODES:
            out.append(str(fp["name"]))
    return out


@contextmanager
def _variables(c: Collector, names: Iterable[str]) -> Iterator[None]:
    """`Run.variables` is `names` (a body's own: outer bodies' are not visible) meanwhile."""
    saved = c.run.variables
    c.run.variables = frozenset(names)
    try:
        yield
    finally:
        c.run.variables = saved


def _pl_names(tree: str, out: set[str]) -> None:
    """Variable (datum) names and block labels of a PL/pgSQL function, read from its JSON
    text (one regular-expression pass instead of a walk of every node)."""
    for match in _NAMES.finditer(tree):
        out.add(orjson.loads(match.group(1)))


def _pl_aliases(text: str, out: set[str]) -> bool:
    """`name ALIAS FOR ...` declarations, which the parsed function does not list; False
    when the text cannot be scanned. ALIAS is a keyword, which no quoting or escape can
    spell, so a body without the word has none (and is not scanned)."""
    if "alias" not in text.lower():
        return True
    try:
        tokens = parser.scan(text)
    except Exception:
        return False
    data = text.encode("utf-8")
    words = [data[t.start : t.end + 1].decode("utf-8", "replace") for t in tokens]
    for i in range(len(tokens) - 2):
        if words[i + 1].lower() == "alias" and tokens[i + 2].name == "FOR":
            word = words[i]
            out.add(word[1:-1].replace('""', '"') if word.startswith('"') else word.lower())
    return True


_NAMES = re.compile(r'"(?:refname|label)":\s*("[^"\\]*(?:\\.[^"\\]*)*")')


def _sql_body(c: Collector, v: Any, text: str, depth: int) -> None:
    if isinstance(v, list):
        for x in v:
            _sql_body(c, x, text, depth)
        return
    if not isinstance(v, dict) or len(v) != 1:
        return
    ((key, inner),) = v.items()
    if key == "List":
        _sql_body(c, inner.get("items", []), text, depth)
    elif key == "ReturnStmt":
        c.walk(inner, c.scope)
    else:
        c.extra.extend(c.run.statement(v, "function_body", text, frozenset(), depth + 1))


def _nested_text(c: Collector, sql: str, origin: str, depth: int) -> None:
    """Analyse a complete SQL text found inside a body; unparseable -> opaque."""
    if depth + 1 > _max_depth():
        c.dynamic = True
        return
    try:
        c.extra.extend(c.run.analyze_text(sql, origin, depth + 1, either=True))
    except Refused:
        raise
    except parser.ParseError:
        c.dynamic = True


def _expression(c: Collector, expr: str, origin: str, depth: int) -> None:
    """An expression inside a body: its functions and relations count for the body."""
    if depth + 1 > _max_depth():
        c.dynamic = True
        return
    if lexical_key("SELECT " + expr) == "SELECT ?":
        return  # one plain string or number (`EXECUTE 'SELECT 1'`): no facts to add
    try:
        facts = c.run.analyze_text("SELECT " + expr, origin, depth + 1, either=True)
    except Refused:
        raise
    except parser.ParseError:
        c.dynamic = True
        return
    if not facts:
        return
    first, rest = facts[0], facts[1:]
    for r in first.relations:
        c.relations[r] = None
    for f in first.functions:
        c.functions[f] = None
    c.dynamic = c.dynamic or first.dynamic_sql
    c.extra.extend(rest)


MAX_DEPTH = 8  # nesting of bodies inside bodies before the code counts as opaque


def _max_depth() -> int:
    return MAX_DEPTH


def _plpgsql(
    c: Collector, text: str, body: str, origin: str, depth: int, names: Iterable[str]
) -> None:
    """PL/pgSQL reads its body when it runs, with the standard_conforming_strings then in
    force: a body that reads otherwise with the setting off is walked in both readings."""
    check_text(body, True)
    alt = off_reading(body)
    texts = [(text, body)]
    if alt is not None:
        alt_text = _with_body(text, body, alt)
        if alt_text is None:
            c.dynamic = True
            return
        texts.append((alt_text, alt))
    for one, one_body in texts:
        try:
            tree = parser.parse_plpgsql_json(one)
        except Exception:
            c.dynamic = True  # PostgreSQL may accept what libpg_query cannot compile: opaque
            return
        if _FUNCTION not in tree:
            c.dynamic = True
            return
        # Every name declared anywhere in the body: more than a statement may see, which
        # only makes the WHERE judgement stricter.
        variables = set(names)
        _pl_names(tree, variables)
        if not _pl_aliases(one_body, variables):
            c.dynamic = True  # its names cannot be listed: opaque
            return
        with _variables(c, variables):
            if not _walk_pl_text(c, tree, origin, depth):
                _walk_pl(c, plpgsql_tree(tree), origin, depth)


def _with_body(text: str, body: str, alt: str) -> str | None:
    """`text` (a CREATE FUNCTION or DO) with the string constant holding `body` replaced by
    `alt`, dollar-quoted; None when that constant cannot be found."""
    data = text.encode("utf-8")
    try:
        tokens = parser.scan(text)
    except Exception:
        return None
    for tok in tokens:
        if tok.name != "SCONST":
            continue
        raw = data[tok.start : tok.end + 1].decode("utf-8")
        if raw.startswith("'"):
            value = raw[1:-1].replace("''", "'")
        elif raw.startswith("$"):
            tag = raw[: raw.index("$", 1) + 1]
            value = raw[len(tag) : -len(tag)]
        else:
            continue
        if value != body:
            continue
        n = 0
        while f"$pgsentry{n}$" in alt:
            n += 1
        quoted = f"$pgsentry{n}$" + alt + f"$pgsentry{n}$"
        return (data[: tok.start] + quoted.encode("utf-8") + data[tok.end + 1 :]).decode("utf-8")
    return None


_FUNCTION = '"PLpgSQL_function":'
_EXPR_KEY = '"PLpgSQL_expr":'
# One expression as libpg_query writes it. Inside a JSON string every `"` is escaped, so
# a key followed by `":` is always a key, never part of a string. A JSON string is written
# unrolled (runs of plain characters between escapes): the same strings, about half the time.
_EXPR = re.compile(r'"PLpgSQL_expr":\{"query":("[^"\\]*(?:\\.[^"\\]*)*"),"parseMode":(\d+)\}')
_DYNAMIC_MARKS = tuple(f'"{key}":' for key in _DYNAMIC_KEYS)


def _walk_pl_text(c: Collector, tree: str, origin: str, depth: int) -> bool:
    """`_walk_pl` read from the JSON text: the expressions in document order (the order of
    the walk) and the dynamic statements' keys, without building the tree. False, with
    nothing done, when an expression is written in another form (the tree is walked)."""
    found = _EXPR.findall(tree)
    if len(found) != tree.count(_EXPR_KEY):
        return False
    if any(mark in tree for mark in _DYNAMIC_MARKS):
        c.dynamic = True
    for query, mode in found:
        _pl_query(c, orjson.loads(query), int(mode), origin, depth)
    return True


def _walk_pl(c: Collector, v: Any, origin: str, depth: int) -> None:
    if isinstance(v, dict):
        for key, x in v.items():
            if key in _DYNAMIC_KEYS:
                c.dynamic = True
            if key == "PLpgSQL_expr" and isinstance(x, dict):
                _pl_expr(c, x, origin, depth)
            elif isinstance(x, dict | list):
                _walk_pl(c, x, origin, depth)
    elif isinstance(v, list):
        for x in v:
            _walk_pl(c, x, origin, depth)


def _pl_expr(c: Collector, x: Node, origin: str, depth: int) -> None:
    _pl_query(c, str(x.get("query", "")), x.get("parseMode", _MODE_DEFAULT), origin, depth)


def _pl_query(c: Collector, query: str, mode: int, origin: str, depth: int) -> None:
    """One PL/pgSQL expression: a statement, an expression or an assignment."""
    if mode == _MODE_DEFAULT:
        _nested_text(c, query, origin, depth)
    elif mode == _MODE_EXPR:
        _expression(c, query, origin, depth)
    elif mode in _MODES_ASSIGN:
        rhs = _assignment_rhs(query)
        if rhs is None:
            c.dynamic = True
        else:
            _expression(c, rhs, origin, depth)


def _assignment_rhs(query: str) -> str | None:
    """The expression of `target := expr` (or `target = expr`), found with the scanner."""
    try:
        tokens = parser.scan(query)
    except Exception:
        return None
    level = 0
    data = query.encode("utf-8")
    for tok in tokens:
        if tok.name in ("ASCII_40", "ASCII_91"):
            level += 1
        elif tok.name in ("ASCII_41", "ASCII_93"):
            level -= 1
        elif level == 0 and tok.name in ("COLON_EQUALS", "ASCII_61"):
            return data[tok.end + 1 :].decode("utf-8", "replace")
    return None
