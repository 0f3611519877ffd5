"""Dangerous functions, set_config / session_replication_role, dynamic SQL functions."""

from __future__ import annotations

import pytest

from pgsentry.analysis import analyze
from pgsentry.analysis.functions import DANGEROUS_FUNCTIONS, FLAGGED_WITH_ARGS


def functions(sql: str) -> list[tuple[str, ...]]:
    result = analyze(sql)
    assert result.parse_error is None, result.parse_error
    return [s.functions for s in result.statements]


@pytest.mark.parametrize("name", sorted(set(DANGEROUS_FUNCTIONS) - {"set_config"}))
def test_every_listed_function_is_flagged(name: str) -> None:
    args = ", ".join(["1"] * FLAGGED_WITH_ARGS.get(name, 1))
    assert functions(f"SELECT {name}({args})") == [(name,)]
    assert functions(f"SELECT pg_catalog.{name.upper()}({args})") == [(name,)]


def test_ts_rewrite_is_flagged_only_in_the_form_that_runs_a_query() -> None:
    assert functions("SELECT ts_rewrite('a'::tsquery, 'SELECT 1')") == [("ts_rewrite",)]
    assert functions("SELECT ts_rewrite('a'::tsquery, 'a'::tsquery, 'b'::tsquery)") == [()]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM ts_stat('SELECT to_tsvector(lo_unlink(1)::text)')",
        "SELECT * FROM xpath_table('id', 'x', 't', '/a', 'false; DELETE FROM t')",
        "CREATE TRIGGER t BEFORE DELETE ON s FOR EACH ROW "
        "EXECUTE FUNCTION check_foreign_key(1, 'cascade', 'id', 'accounts', 'id = id OR id')",
    ],
)
def test_functions_that_run_sql_text_are_dynamic(sql: str) -> None:
    assert analyze(sql).statements[0].dynamic_sql


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'x'",
        "SELECT * FROM pg_stat_activity WHERE pg_terminate_backend(pid)",
        "SELECT (SELECT max(pg_terminate_backend(pid)::int) FROM pg_stat_activity)",
        "SELECT 1 FROM (SELECT pg_terminate_backend(1)) s",
        "SELECT * FROM pg_terminate_backend(1)",
        "WITH x AS (SELECT pg_terminate_backend(1)) SELECT * FROM x",
        "SELECT 1 UNION SELECT pg_terminate_backend(1)::int",
        "UPDATE accounts SET balance = pg_terminate_backend(1)::int WHERE id = 1",
        "INSERT INTO accounts SELECT pg_terminate_backend(1)::int",
        "DELETE FROM accounts WHERE id = 1 RETURNING pg_terminate_backend(1)",
        "CREATE INDEX ON accounts ((pg_terminate_backend(id)))",
        "ALTER TABLE accounts ALTER COLUMN id TYPE bigint USING pg_terminate_backend(id)::int",
        "CALL p(pg_terminate_backend(1))",
        "EXECUTE p(pg_terminate_backend(1))",
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(1)) FROM accounts",
    ],
)
def test_function_found_anywhere(sql: str) -> None:
    assert "pg_terminate_backend" in functions(sql)[0]


def test_harmless_functions_are_not_flagged() -> None:
    assert functions("SELECT now(), count(*), lower(owner) FROM accounts") == [()]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT set_config('session_replication_role', 'replica', false)",
        "SELECT set_config('SESSION_REPLICATION_ROLE', 'replica', true)",
        "SELECT pg_catalog.set_config('session_replication_role', 'replica', false)",
        "SELECT set_config(name, 'replica', false) FROM pg_settings",
        # set_config(name, ...) FROM pg_settings: only a WHERE pinning name to harmless
        # settings, seen from the target list of that SELECT, clears it (see settings.py)
        "SELECT set_config(name, 'replica', false) FROM pg_settings "
        "WHERE name = 'session_replication_role'",
        "SELECT set_config(name, 'x', false) FROM pg_settings "
        "WHERE name = 'SESSION_REPLICATION_ROLE'",
        "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name IN ('work_mem', 'role')",
        "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'work_mem' OR true",
        "SELECT 1 FROM pg_settings WHERE name = 'work_mem' AND set_config(name, 'x', false) = ''",
        "SELECT set_config(name, 'x', false) FROM myschema.pg_settings WHERE name = 'work_mem'",
        "SELECT set_config(name, 'x', false) FROM pg_settings, t WHERE name = 'work_mem'",
        "SELECT (SELECT set_config(name, 'x', false) FROM t) FROM pg_settings WHERE name = 'a'",
        "SELECT set_config(pg_settings.name, 'x', false) FROM pg_settings s WHERE s.name = 'a'",
        "SELECT set_config(setting, 'x', false) FROM pg_settings WHERE name = 'work_mem'",
        "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'a' "
        "UNION SELECT set_config(name, 'x', false) FROM pg_settings",
        "SELECT set_config($1, $2, false)",
        "SELECT set_config('session_' || 'replication_role', 'replica', false)",
        "SELECT set_config('role', 'postgres', false)",
        "SET session_replication_role = replica",
        "SET LOCAL session_replication_role TO 'replica'",
        "SET SESSION session_replication_role = replica",
        "ALTER ROLE app SET session_replication_role = replica",
        "ALTER DATABASE db SET session_replication_role = replica",
        "ALTER SYSTEM SET session_replication_role = replica",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET session_replication_role = replica "
        "AS 'SELECT 1'",
    ],
)
def test_set_config_marker(sql: str) -> None:
    assert "set_config" in functions(sql)[0]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT set_config('search_path', 'app', false)",
        "SELECT set_config('app.user_id', '42', true)",
        # what pg_dump 15.14 and later sends
        "SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings "
        "WHERE name = 'restrict_nonsystem_relation_kind'",
        "SELECT pg_catalog.set_config(s.name, 'on', false) FROM pg_catalog.pg_settings s "
        "WHERE 'work_mem' = s.name AND s.context = 'user'",
        "SET search_path = app",
        "RESET session_replication_role",
        "SET session_replication_role TO DEFAULT",
    ],
)
def test_harmless_settings_carry_no_marker(sql: str) -> None:
    assert "set_config" not in functions(sql)[0]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT dblink_exec('dbname=prod', 'DROP TABLE accounts')",
        "SELECT * FROM dblink('dbname=prod', 'DELETE FROM accounts RETURNING id') AS t(id int)",
        "SELECT query_to_xml('DELETE FROM accounts RETURNING id', true, true, '')",
    ],
)
def test_functions_running_sql_text_are_dynamic(sql: str) -> None:
    s = analyze(sql).statements[0]
    assert s.dynamic_sql
    assert s.functions
