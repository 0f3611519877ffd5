"""`analyze(sql)`: SQL text -> `Analysis`, with two bounded caches in front of the parser.

Owns the public entry point, the caches and the fast path. Never raises.

1. Text cache: (text, standard_conforming_strings on, off or not known) -> Analysis. A
   repeated text costs one dictionary look-up.
2. Shape cache (the fast path for never-seen texts): libpg_query's `normalize` replaces
   every constant token with $n and keeps all other text byte for byte, so two texts with
   the same normalized form differ only in constants. A full analysis is stored under its
   normalized form only when it is one SELECT / INSERT / UPDATE / DELETE with no nested
   statement (but the `update` fact of an INSERT ... ON CONFLICT DO UPDATE), no session
   effect and no dynamic code, and no fact depended on a constant's value or type
   (`Sensitivity`). Any other text, or one whose shape is not stored yet,
   takes the full path (a text whose first word starts no such statement, DO or CREATE
   say, skips the look-up). `normalize` parses the whole text, so a text that does not parse,
   or that hides a second statement, never matches a stored shape. Such shape-cacheable
   statements carry the normalized text (constants as $n, like pg_stat_statements) in
   `StatementFacts.text`, so the result is the same whether or not the shape was known.
3. Lexical shapes, in front of (2): for texts made only of ASCII letters, digits, spaces,
   tabs, newlines, `_ , . ( ) = < > * + - ;`, plain '...' strings and "..." quoted
   identifiers (so no comments, dollar quotes, escapes, `$n`, `?` or non-ASCII; the exact
   rules are in `lexical.py`), `lexical_key` replaces the constant tokens with `?`, which
   gives a key that two texts share only when they differ in constants alone (the same
   tokens otherwise, so the same parse tree up to constant values; numbers that are not
   A_Const, such as typmods, never change facts). A key is stored only for a text whose
   analysis went into the shape cache, so a hit returns the Analysis (2) would, without
   parsing.
4. Full path: `extract.Run`.

Must not know who is asking; policy reloads do not touch these caches (facts do not
depend on policy).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import TypeVar

from pglast import parser

from pgsentry.analysis import kinds as K
from pgsentry.analysis.extract import Run, whole_text
from pgsentry.analysis.facts import Analysis, StatementFacts
from pgsentry.analysis.lexical import lexical_key
from pgsentry.analysis.literals import Refused

TEXT_CACHE_SIZE = 8192
SHAPE_CACHE_SIZE = 4096
MAX_CACHED_TEXT = 64 * 1024  # longer texts are analysed every time, never stored

_V = TypeVar("_V")
_SHAPE_KINDS = frozenset({K.SELECT, K.INSERT, K.UPDATE, K.DELETE})

_texts_on: OrderedDict[str, Analysis] = OrderedDict()
_texts_off: OrderedDict[str, Analysis] = OrderedDict()
_texts_either: OrderedDict[str, Analysis] = OrderedDict()
_shapes: OrderedDict[str, Analysis] = OrderedDict()
_lexical: OrderedDict[str, Analysis] = OrderedDict()


def clear_cache() -> None:
    """Forget every cached analysis and shape."""
    _texts_on.clear()
    _texts_off.clear()
    _texts_either.clear()
    _shapes.clear()
    _lexical.clear()


def cache_sizes() -> tuple[int, int]:
    """(cached texts, cached shapes), for metrics."""
    return len(_texts_on) + len(_texts_off) + len(_texts_either), len(_shapes)


def analyze(sql: str, *, standard_conforming_strings: bool | None = True) -> Analysis:
    """The facts of every statement in `sql`. Unanalysable text -> `parse_error` set.

    `standard_conforming_strings` None: the setting in force when the text runs is not
    known (a pipelined statement); a text that reads otherwise with it off is read both
    ways and both readings' statements count.
    """
    if standard_conforming_strings is None and "\\" not in sql:
        standard_conforming_strings = True  # no backslash: both readings are the same
    if standard_conforming_strings is None:
        texts = _texts_either
    else:
        texts = _texts_on if standard_conforming_strings else _texts_off
    hit = texts.get(sql)
    if hit is not None:
        return hit
    if len(sql) > MAX_CACHED_TEXT:
        return _full(sql, standard_conforming_strings, None)
    lexical = lexical_key(sql)
    if lexical is not None:
        known = _lexical.get(lexical)
        if known is not None:
            return known  # literal variants of a known shape: not worth a text-cache slot
    shape: str | None = None
    if (standard_conforming_strings or "\\" not in sql) and _may_have_shape(sql):
        try:
            shape = parser.normalize(sql)
        except Exception:
            shape = None  # the full path reports the error
        else:
            known = _shapes.get(shape)
            if known is not None and "\x00" not in sql:
                if lexical is not None:
                    _store(_lexical, lexical, known, SHAPE_CACHE_SIZE)
                else:
                    _store(texts, sql, known, TEXT_CACHE_SIZE)
                return known
    result = _full(sql, standard_conforming_strings, shape)
    _store(texts, sql, result, TEXT_CACHE_SIZE)
    if lexical is not None and shape is not None and _shapes.get(shape) is result:
        _store(_lexical, lexical, result, SHAPE_CACHE_SIZE)
    return result


_FIRST_WORD = re.compile(r"\s*([A-Za-z]+)")
# Statements that start with these words are never one SELECT / INSERT / UPDATE / DELETE,
# so no shape is stored for them: their texts skip `normalize` (a second parse).
_NEVER_SHAPED = frozenset({
    "do", "create", "alter", "drop", "grant", "revoke", "truncate", "copy", "set", "reset",
    "begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release", "prepare",
    "execute", "deallocate", "discard", "vacuum", "analyze", "comment", "lock", "listen",
    "unlisten", "notify", "show", "fetch", "move", "close", "declare", "call", "refresh",
    "reindex", "cluster", "checkpoint", "load", "security", "import", "reassign",
})  # fmt: skip


def _may_have_shape(sql: str) -> bool:
    match = _FIRST_WORD.match(sql)
    return match is None or match[1].lower() not in _NEVER_SHAPED


def known_lexical(key: str) -> Analysis | None:
    """The Analysis stored for a lexical shape key (rule 3), if any: what `analyze` returns
    for every text of at most MAX_CACHED_TEXT characters whose `lexical_key` is `key`."""
    return _lexical.get(key)


def _full(sql: str, scs: bool | None, shape: str | None) -> Analysis:
    run = Run(scs)
    try:
        statements = tuple(run.analyze_text(sql, "top", 0))
    except Refused as exc:
        return Analysis(parse_error=str(exc))
    except parser.ParseError as exc:
        return Analysis(parse_error=str(exc))
    except RecursionError:
        return Analysis(parse_error="statement is nested too deeply to analyse")
    except Exception as exc:  # fail closed: an analysis bug must never let text through
        return Analysis(parse_error=f"analysis failed: {type(exc).__name__}: {exc}")
    effects = tuple(run.effects)
    result = Analysis(statements=statements, session_effects=effects)
    if shape is not None and not run.sens.hit and not effects and _one_plain_statement(statements):
        # Shared by every text of this shape, so its text is the normalized one.
        text = whole_text(shape)
        result = Analysis(statements=tuple(_with_text(s, text) for s in statements))
        _store(_shapes, shape, result, SHAPE_CACHE_SIZE)
    return result


def _one_plain_statement(statements: tuple[StatementFacts, ...]) -> bool:
    """One SELECT / INSERT / UPDATE / DELETE, or an upsert: INSERT + its DO UPDATE fact."""
    if not statements or statements[0].kind not in _SHAPE_KINDS or statements[0].dynamic_sql:
        return False
    if len(statements) == 1:
        return True
    return (
        len(statements) == 2
        and statements[0].kind == K.INSERT
        and (statements[1].origin == "on_conflict")
    )


def _with_text(facts: StatementFacts, text: str) -> StatementFacts:
    return StatementFacts(
        facts.kind,
        facts.origin,
        facts.relations,
        facts.where,
        facts.cascade,
        facts.dynamic_sql,
        facts.functions,
        text,
        facts.objects,
    )


def _store(cache: OrderedDict[str, _V], key: str, value: _V, limit: int) -> None:
    """Insert, evicting the oldest entry (FIFO: a hit does not reorder, so it stays cheap)."""
    if len(cache) >= limit:
        if limit <= 0:
            return
        cache.popitem(last=False)
    cache[key] = value
