"""Every way of hiding a dangerous statement named in issue 3 is seen through."""

from __future__ import annotations

import pytest

from pgsentry.analysis import WhereClause, analyze


def facts(sql: str) -> list[tuple[str, str]]:
    result = analyze(sql)
    assert result.parse_error is None, result.parse_error
    return [(s.kind, s.origin) for s in result.statements]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; DROP TABLE accounts",
        "SELECT 1;DROP TABLE accounts;",
        "BEGIN; SELECT 1; DROP TABLE accounts; COMMIT",
        "select 1 ;\n\n\tdrop\ttable\naccounts",
        "/* harmless */ SELECT 1; -- nothing\n DROP TABLE accounts",
        "SELECT '; DROP TABLE x'; DROP TABLE accounts",
        'SELECT 1 AS "; drop"; DROP TABLE accounts',
        "SELECT $$;$$; DROP TABLE accounts",
        "dRoP tAbLe AcCoUnTs",
        "DROP/**/TABLE/**/accounts",
        "DROP TABLE /* nested /* comment */ still comment */ accounts",
        'DROP TABLE "accounts"',
        'DROP TABLE public."accounts"',
        'DROP TABLE U&"\\0061ccounts"',
        "DROP TABLE U&\"!0061ccounts\" UESCAPE '!'",
        "DROP TABLE IF EXISTS accounts",
    ],
)
def test_drop_table_is_seen(sql: str) -> None:
    result = analyze(sql)
    assert result.parse_error is None
    drops = [s for s in result.statements if s.kind == "drop_table"]
    assert len(drops) == 1
    assert drops[0].relations[0].name == "accounts"


def test_data_modifying_cte() -> None:
    result = analyze("WITH d AS (DELETE FROM accounts RETURNING *) SELECT count(*) FROM d")
    assert [(s.kind, s.origin) for s in result.statements] == [("select", "top"), ("delete", "cte")]
    assert result.statements[1].where == WhereClause.MISSING


def test_data_modifying_cte_nested_in_cte_and_insert() -> None:
    sql = (
        "WITH a AS (UPDATE accounts SET balance = 0 RETURNING id), "
        "b AS (DELETE FROM orders WHERE true RETURNING id) "
        "INSERT INTO app.users SELECT id, 'x' FROM a"
    )
    assert facts(sql) == [("insert", "top"), ("update", "cte"), ("delete", "cte")]


def test_do_block_static_and_dynamic() -> None:
    result = analyze("DO $$ BEGIN DROP TABLE accounts; END $$")
    assert [(s.kind, s.origin) for s in result.statements] == [
        ("do_block", "top"),
        ("drop_table", "do_block"),
    ]
    assert not result.statements[0].dynamic_sql
    dyn = analyze("DO $x$ BEGIN EXECUTE 'DROP TABLE ' || 'accounts'; END $x$")
    assert dyn.statements[0].kind == "do_block"
    assert dyn.statements[0].dynamic_sql


@pytest.mark.parametrize(
    "body",
    [
        "BEGIN IF true THEN TRUNCATE accounts; END IF; END",
        "BEGIN LOOP DELETE FROM accounts; EXIT; END LOOP; END",
        "BEGIN BEGIN SELECT 1; EXCEPTION WHEN others THEN TRUNCATE accounts; END; END",
        "DECLARE r record; BEGIN FOR r IN SELECT 1 LOOP TRUNCATE accounts; END LOOP; END",
        "BEGIN CASE WHEN 1 = 1 THEN TRUNCATE accounts; END CASE; END",
    ],
)
def test_do_block_nested_control_flow(body: str) -> None:
    kinds = [s.kind for s in analyze(f"DO $$ {body} $$").statements]
    assert kinds[0] == "do_block"
    assert {"truncate", "delete"} & set(kinds)


@pytest.mark.parametrize(
    "stmt",
    [
        "EXECUTE 'TRUNCATE accounts'",
        "EXECUTE format('DROP TABLE %I', 'accounts')",
        "FOR r IN EXECUTE 'DELETE FROM accounts RETURNING *' LOOP END LOOP",
        "OPEN c FOR EXECUTE 'SELECT 1'",
    ],
)
def test_dynamic_plpgsql_statements(stmt: str) -> None:
    sql = f"DO $$ DECLARE r record; c refcursor; BEGIN {stmt}; END $$"
    assert analyze(sql).statements[0].dynamic_sql


def test_do_block_expressions_contribute_functions() -> None:
    sql = (
        "DO $$ DECLARE x bool; BEGIN x := pg_terminate_backend(1); "
        "IF pg_cancel_backend(2) THEN NULL; END IF; PERFORM lo_unlink(3); END $$"
    )
    result = analyze(sql)
    assert set(result.statements[0].functions) == {"pg_terminate_backend", "pg_cancel_backend"}
    assert ("select", "do_block") in [(s.kind, s.origin) for s in result.statements]
    assert "lo_unlink" in result.statements[1].functions


def test_do_block_in_other_language_is_opaque() -> None:
    s = analyze("DO LANGUAGE plpython3u $$ plpy.execute('DROP TABLE accounts') $$").statements[0]
    assert s.kind == "do_block" and s.dynamic_sql


def test_do_block_that_does_not_compile_is_opaque() -> None:
    s = analyze("DO $$ BEGIN this is not plpgsql; END $$").statements[0]
    assert s.dynamic_sql


def test_do_block_nested_in_do_block() -> None:
    sql = (
        "DO $a$ BEGIN EXECUTE 'x'; END $a$; "
        "DO $b$ BEGIN DO $c$ BEGIN DROP TABLE t; END $c$; END $b$"
    )
    kinds = [(s.kind, s.origin) for s in analyze(sql).statements]
    assert ("drop_table", "do_block") in kinds
    assert kinds.count(("do_block", "do_block")) == 1


@pytest.mark.parametrize(
    ("sql", "inner"),
    [
        (
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DROP TABLE accounts; "
            "END $$",
            "drop_table",
        ),
        (
            "CREATE OR REPLACE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS "
            "'BEGIN DELETE FROM accounts; RETURN NEW; END'",
            "delete",
        ),
        ("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'TRUNCATE accounts'", "truncate"),
        ("CREATE PROCEDURE p() LANGUAGE sql AS $$ DELETE FROM accounts $$", "delete"),
        ("CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC DELETE FROM accounts; END", "delete"),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC UPDATE accounts SET "
            "balance = 0; SELECT 1; END",
            "update",
        ),
    ],
)
def test_function_bodies(sql: str, inner: str) -> None:
    found = facts(sql)
    assert found[0][0] in ("create_function", "create_or_replace_function")
    assert (inner, "function_body") in found


def test_function_body_dynamic_and_opaque() -> None:
    dyn = "CREATE FUNCTION f(t text) RETURNS void LANGUAGE plpgsql AS $$BEGIN EXECUTE t; END$$"
    assert analyze(dyn).statements[0].dynamic_sql
    c_fn = "CREATE FUNCTION f() RETURNS int AS 'libfoo', 'f' LANGUAGE c"
    assert analyze(c_fn).statements[0].dynamic_sql
    py = "CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS 'return 1'"
    assert analyze(py).statements[0].dynamic_sql


def test_sql_function_return_expression() -> None:
    s = analyze("CREATE FUNCTION f() RETURNS bool LANGUAGE sql RETURN pg_terminate_backend(1)")
    assert s.statements[0].functions == ("pg_terminate_backend",)


def test_create_rule_actions() -> None:
    sql = "CREATE RULE r AS ON SELECT TO orders DO ALSO (DELETE FROM accounts; NOTIFY x)"
    assert facts(sql) == [
        ("create_rule", "top"),
        ("delete", "rule_action"),
        ("notify", "rule_action"),
    ]


def test_prepare() -> None:
    result = analyze("PREPARE p(int) AS DELETE FROM accounts WHERE 1 = 1")
    assert [(s.kind, s.origin) for s in result.statements] == [
        ("prepare", "top"),
        ("delete", "prepare"),
    ]
    assert result.statements[1].where == WhereClause.TAUTOLOGICAL


def test_explain_analyze_runs_the_statement() -> None:
    assert facts("EXPLAIN ANALYZE DELETE FROM accounts") == [
        ("explain", "top"),
        ("delete", "explain"),
    ]
    for option in ("ANALYZE true", "ANALYZE on", "ANALYZE 1", "ANALYZE 'yes'", "analyze"):
        sql = f"EXPLAIN ({option}, BUFFERS) UPDATE accounts SET balance = 0"
        assert facts(sql) == [("explain", "top"), ("update", "explain")], option
    assert facts("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM accounts")[1] == ("delete", "explain")
    assert facts("EXPLAIN (ANALYZE false) DELETE FROM accounts") == [("explain", "top")]
    assert facts("EXPLAIN DELETE FROM accounts") == [("explain", "top")]


def test_copy_of_a_data_modifying_query() -> None:
    assert facts("COPY (DELETE FROM accounts RETURNING *) TO STDOUT") == [
        ("copy_to", "top"),
        ("delete", "copy"),
    ]


def test_create_table_as_execute_and_explain_execute_are_effects() -> None:
    assert ("execute", "p") in analyze("CREATE TABLE t AS EXECUTE p").session_effects
    assert ("execute", "p") in analyze("EXPLAIN ANALYZE EXECUTE p").session_effects


def test_dollar_quoted_drop_is_only_a_string() -> None:
    result = analyze("SELECT $x$DROP TABLE accounts$x$")
    assert [s.kind for s in result.statements] == ["select"]


def test_strings_and_comments_hide_nothing_and_invent_nothing() -> None:
    result = analyze("SELECT 'DROP TABLE accounts' -- DROP TABLE orders")
    assert [s.kind for s in result.statements] == ["select"]


# ------------------------------------------------------------------ reading both ways


def test_off_reading_prefixes_plain_literals_with_backslashes() -> None:
    from pgsentry.analysis.literals import off_reading

    assert off_reading("SELECT 1") is None
    assert off_reading("SELECT E'\\n', 'x'") is None
    assert off_reading("SELECT '\\s+', 'y'") == "SELECT  E'\\s+', 'y'"
    assert off_reading("SELECT 'a\\\\'") == "SELECT  E'a\\\\'"


@pytest.mark.parametrize("sql", ["SELECT 'a\\' , $$'; DROP TABLE t; --$$", "SELECT 'x\\''"])
def test_off_reading_refuses_a_literal_whose_end_moves(sql: str) -> None:
    from pgsentry.analysis.literals import Refused, off_reading

    with pytest.raises(Refused):
        off_reading(sql)


def test_unknown_setting_reads_a_text_both_ways() -> None:
    hidden = "SELECT set_config('session_replic\\ation_role', 'replica', false)"
    assert "set_config" not in analyze(hidden).statements[0].functions
    either = analyze(hidden, standard_conforming_strings=None)
    assert any("set_config" in s.functions for s in either.statements)
    assert analyze(
        "SELECT 'a\\' , $$'; DROP TABLE t; --$$", standard_conforming_strings=None
    ).parse_error


@pytest.mark.parametrize(
    "body",
    [
        "$f$SELECT 'a\\' , $$'; DROP TABLE t; --$$$f$",
        "$f$SELECT set_config('session_replic\\ation_role', 'replica', false)$f$",
    ],
)
def test_sql_function_bodies_are_read_both_ways(body: str) -> None:
    a = analyze(f"CREATE FUNCTION f() RETURNS void LANGUAGE sql AS {body}")
    assert a.parse_error or any("set_config" in s.functions for s in a.statements)


def test_plpgsql_bodies_are_read_both_ways() -> None:
    body = "BEGIN PERFORM set_config('session_replic\\ation_role', 'replica', false); END"
    for sql in (
        f"CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $f${body}$f$",
        f"DO $f${body}$f$",
        "DO '" + body.replace("'", "''") + "'",
    ):
        a = analyze(sql)
        assert a.parse_error is None, sql
        assert any("set_config" in s.functions for s in a.statements), sql
    plain = analyze("DO $f$BEGIN PERFORM regexp_replace('a  b', '\\s+', ' '); END$f$")
    assert plain.parse_error is None
    assert not any(s.functions for s in plain.statements)


@pytest.mark.parametrize(
    "where",
    [
        "(id = id AND NULL) IS NOT FALSE",
        "(id = id AND NULL) IS UNKNOWN",
        "(id = id AND NULL) IS NOT UNKNOWN",
    ],
)
def test_boolean_tests_that_a_null_passes_are_not_restrictions(where: str) -> None:
    facts = analyze(f"DELETE FROM accounts WHERE {where}").statements[0]
    assert facts.where == WhereClause.TAUTOLOGICAL


def test_a_boolean_test_of_a_row_condition_restricts() -> None:
    facts = analyze("DELETE FROM accounts WHERE (id = 5) IS NOT FALSE").statements[0]
    assert facts.where == WhereClause.PRESENT


@pytest.mark.parametrize("table", ["pg_settings", "pg_catalog.pg_settings"])
def test_update_of_pg_settings_is_a_set_config(table: str) -> None:
    sql = f"UPDATE {table} SET setting = 'replica' WHERE name = 'session_replication_role'"
    assert "set_config" in analyze(sql).statements[0].functions


@pytest.mark.parametrize(
    "sql",
    [
        # a PL/pgSQL ALIAS is a variable, not a column of the target
        "DO $$DECLARE a int := 1; k ALIAS FOR a; BEGIN DELETE FROM victim WHERE k = 1; END$$",
        "CREATE FUNCTION wipe(int) RETURNS void LANGUAGE plpgsql AS "
        "$$DECLARE k ALIAS FOR $1; BEGIN DELETE FROM victim WHERE k = 1; END$$",
        "DO $$DECLARE a int := 1; k aLiAs FOR a; BEGIN DELETE FROM victim WHERE k = 1; END$$",
        # transform_null_equals reads `x = NULL` as `x IS NULL`
        "DELETE FROM victim WHERE NULL = NULL",
        "UPDATE victim SET v = NULL WHERE 1 = NULL",
        # the same table joined to itself row for row
        "MERGE INTO victim USING victim s ON victim.id = s.id WHEN MATCHED THEN DELETE",
        "DELETE FROM victim USING victim t2 WHERE victim.id = t2.id",
        "UPDATE victim SET v = NULL FROM victim t2 WHERE victim.id = t2.id",
        "DELETE FROM victim WHERE EXISTS (SELECT 1 FROM victim t2 WHERE t2.id = victim.id)",
        "DELETE FROM victim WHERE id IN (SELECT id FROM public.victim)",
        "DELETE FROM victim WHERE id IN (SELECT id FROM ONLY victim)",
        "DELETE FROM victim WHERE id IN (SELECT id FROM victim UNION SELECT 0)",
    ],
)
def test_second_review_equivalents_are_tautological(sql: str) -> None:
    assert _dml_where(sql) == WhereClause.TAUTOLOGICAL


@pytest.mark.parametrize(
    "sql",
    [
        "DO $$DECLARE k int := 1; BEGIN DELETE FROM victim WHERE id = k; END$$",
        "DELETE FROM victim WHERE EXISTS (SELECT 1 FROM victim t2 WHERE t2.id = victim.id "
        "AND t2.v = 'x')",
        "DELETE FROM victim USING other t2 WHERE victim.id = t2.id",
        "DELETE FROM victim WHERE id IN (SELECT id FROM victim INTERSECT SELECT 0)",
        "DELETE FROM victim WHERE NULL::int = 1",
        "DELETE FROM victim WHERE 1 = 2",
    ],
)
def test_second_review_near_misses_still_restrict(sql: str) -> None:
    assert _dml_where(sql) == WhereClause.PRESENT


def _dml_where(sql: str) -> WhereClause | None:
    """The WHERE judgement of the first DELETE / UPDATE / MERGE in `sql`."""
    dml = [s for s in analyze(sql).statements if s.kind in ("delete", "update", "merge")]
    assert dml, sql
    return dml[0].where
