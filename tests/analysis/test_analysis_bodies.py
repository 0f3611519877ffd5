"""PL/pgSQL bodies: the expressions read from the parser's JSON text (`_walk_pl_text`)
give the facts a walk of the whole tree (`_walk_pl`) gives."""

from __future__ import annotations

from typing import Any

import pytest

from pgsentry.analysis import analyzer, bodies
from pgsentry.analysis.facts import Analysis

from .test_corpus import BENIGN, DANGEROUS

BODIES = [
    "DO $$ BEGIN DELETE FROM orders WHERE id = 1; EXECUTE 'SELECT 1'; END $$",
    "DO $$ DECLARE r record; c refcursor; x int := f(1); BEGIN "
    "FOR r IN EXECUTE 'select 1' LOOP PERFORM g(r); END LOOP; "
    "OPEN c FOR EXECUTE 'x' || x; x := x + pg_sleep(1); "
    "IF x > (SELECT count(*) FROM t) THEN PERFORM 1; ELSIF x < 0 THEN DELETE FROM t; "
    "ELSE UPDATE t SET a = 1 WHERE a = x; END IF; RAISE NOTICE 'a %', lo_unlink(x); END $$",
    "DO $$ BEGIN RETURN; EXCEPTION WHEN others THEN TRUNCATE t; END $$",
    "DO $$ DECLARE s text := 'a\"b\\\\'; BEGIN EXECUTE format('%s\"', s) USING 2; END $$",
    "DO $$ <<outer>> DECLARE n int; BEGIN CASE n WHEN 1 THEN DROP TABLE t; END CASE; "
    "WHILE n < 3 LOOP n := n + 1; END LOOP; FOREACH n IN ARRAY ARRAY[1,2] LOOP NULL; "
    "END LOOP; COMMIT; END outer $$",
    "CREATE FUNCTION f(a int) RETURNS SETOF t LANGUAGE plpgsql AS $$ BEGIN "
    "RETURN QUERY EXECUTE 'SELECT * FROM t'; RETURN QUERY SELECT * FROM t WHERE id = a; "
    "DELETE FROM t WHERE id = a; END $$",
]


_TEXT_WALK = bodies._walk_pl_text


def _both(sql: str, monkeypatch: pytest.MonkeyPatch, scs: bool = True) -> tuple[Any, Any]:
    used: list[bool] = []
    real = _TEXT_WALK

    def spy(*args: Any) -> bool:
        used.append(real(*args))
        return used[-1]

    analyzer.clear_cache()
    monkeypatch.setattr(bodies, "_walk_pl_text", spy)
    text_walk = analyzer.analyze(sql, standard_conforming_strings=scs)
    analyzer.clear_cache()
    monkeypatch.setattr(bodies, "_walk_pl_text", lambda *args: False)
    tree_walk = analyzer.analyze(sql, standard_conforming_strings=scs)
    analyzer.clear_cache()
    return (text_walk, used), tree_walk


@pytest.mark.parametrize("sql", BODIES)
def test_the_text_walk_reads_what_the_tree_walk_reads(
    sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (text_walk, used), tree_walk = _both(sql, monkeypatch)
    assert used and all(used)  # the text was read, not handed back to the walk
    assert isinstance(text_walk, Analysis) and text_walk.parse_error is None
    assert text_walk == tree_walk


def test_every_corpus_body_reads_the_same_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    read = 0
    for entry in DANGEROUS + BENIGN:
        scs = not entry.get("scs_off", False)
        (text_walk, used), tree_walk = _both(entry["sql"], monkeypatch, scs)
        assert text_walk == tree_walk, entry["id"]
        read += sum(used)
    assert read >= 15  # the corpora hold 19 PL/pgSQL bodies


def test_an_expression_of_another_form_falls_back_to_the_tree() -> None:
    from pgsentry.analysis.extract import Collector, Run

    c = Collector(Run(True), frozenset())
    tree = '[{"PLpgSQL_function":{"action":{"PLpgSQL_expr":{"parseMode":0,"query":"x"}}}}]'
    assert bodies._walk_pl_text(c, tree, "do_block", 0) is False
    assert c.extra == [] and not c.dynamic
