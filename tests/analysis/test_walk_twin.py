"""The C tree walk (`pgsentry.analysis._walk`) against its Python twin (`collector.py_walk`).

Owns checking that both visit the same nodes in the same order and leave the same facts:
on random trees made of node names, field names and values the walk treats specially
(hypothesis), on the parse trees of both statement corpora, and through `analyze()` of
every corpus entry. Also that the C walk fails closed like the Python one (too deep a
tree, a handler's error).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pgsentry.analysis import analyzer, collector, trees
from pgsentry.analysis.collector import Collector
from pgsentry.analysis.extract import Run

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
ENTRIES: list[dict[str, Any]] = [
    e
    for name in ("dangerous.yaml", "benign.yaml")
    for e in yaml.safe_load((CORPUS / name).read_text())
]


@contextmanager
def python_walk() -> Iterator[None]:
    """Run the Python twin (for the walk and every handler's nested walk) inside."""
    native = Collector.walk
    Collector.walk = collector.py_walk  # type: ignore[method-assign]
    try:
        yield
    finally:
        Collector.walk = native  # type: ignore[method-assign]
        analyzer.clear_cache()


def _outcome(tree: Any) -> tuple[Any, ...]:
    """Walk `tree` once; what the collector and its run hold afterwards, and the error."""
    run = Run(True)
    c = Collector(run, frozenset({"cte_name"}))
    error = None
    try:
        c.walk(tree, c.scope)
    except Exception as exc:  # compared, not hidden
        error = type(exc).__name__
    nested = [(repr(n), origin, sorted(scope)) for n, origin, scope in c.nested]
    return (
        error,
        list(c.relations),
        list(c.functions),
        list(c.objects),
        c.dynamic,
        nested,
        list(run.effects),
        run.sens.hit,
    )


def _both(tree: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    native = _outcome(tree)
    with python_walk():
        return native, _outcome(tree)


def test_the_extension_is_built_and_in_use() -> None:
    assert collector.NATIVE, "the C extension pgsentry.analysis._walk was not built"
    assert Collector.walk is not collector.py_walk


# Keys the walk treats specially (handlers, leaves, RangeVar and VariableSetStmt fields),
# other node and field names, and keys that are not node names at all.
_KEYS = st.sampled_from([
    "RangeVar", "FuncCall", "SelectStmt", "VariableSetStmt", "ExecuteStmt", "TypeName",
    "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "String", "A_Const", "ColumnRef",
    "A_Star", "Integer", "A_Expr", "BoolExpr", "SubLink", "ResTarget", "JoinExpr", "List",
    "relname", "schemaname", "kind", "name", "args", "funcname", "sval", "targetList",
    "fromClause", "whereClause", "withClause", "ctes", "CommonTableExpr", "ctename",
    "ctequery", "params", "lexpr", "rexpr", "Élan", "_x", "1", "",
])  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([
        "VAR_SET_VALUE", "VAR_RESET", "VAR_", "AEXPR_OP", "var_x", "set_config", "pg_read_file",
        "search_path", "role", "t", "cte_name", "dblink_exec", "",
    ]),
)  # fmt: skip
_TREES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=40,
)


@settings(max_examples=1500, deadline=None)
@given(_TREES)
def test_c_walk_equals_python_walk_on_random_trees(tree: Any) -> None:
    native, python = _both(tree)
    assert native == python


def test_c_walk_equals_python_walk_on_corpus_trees() -> None:
    walked = 0
    for entry in ENTRIES:
        try:
            tree = trees.sql_tree(entry["sql"])
        except Exception:
            continue  # not parsable: the analyze() comparison below covers it
        native, python = _both(tree)
        assert native == python, entry["id"]
        assert native[0] is None, (entry["id"], native[0])  # a real tree never fails the walk
        walked += 1
    assert walked > 300


def test_analyze_is_the_same_with_either_walk() -> None:
    texts = [(e["sql"], not e.get("scs_off", False)) for e in ENTRIES]
    analyzer.clear_cache()
    native = [analyzer.analyze(sql, standard_conforming_strings=scs) for sql, scs in texts]
    analyzer.clear_cache()
    with python_walk():
        python = [analyzer.analyze(sql, standard_conforming_strings=scs) for sql, scs in texts]
    assert native == python
    assert len(texts) > 300


def test_too_deep_a_tree_fails_closed_in_both() -> None:
    deep: Any = {"A_Expr": {}}
    for _ in range(5000):
        deep = {"A_Expr": {"lexpr": [deep]}}
    native, python = _both(deep)
    assert native[0] == python[0] == "RecursionError"
