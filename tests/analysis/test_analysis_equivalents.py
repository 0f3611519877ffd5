"""Statements with the same effect as one the shipped policy stops get the same facts.

ON CONFLICT DO UPDATE (an UPDATE), ALTER TABLE subcommands and policies (every
AlterTableType classified), flagged functions bound by name in DDL (reported as calls),
file_fdw options (reported as the COPY they run). Each with near-miss harmless cases.
"""

from __future__ import annotations

import pytest
from pglast.enums.parsenodes import AlterTableType

from pgsentry.analysis import Relation, WhereClause, analyze
from pgsentry.analysis.alter import DESTROYS, HARMLESS, INTERNAL, SUBCOMMANDS, WEAKENS
from pgsentry.analysis.analyzer import cache_sizes, clear_cache
from pgsentry.analysis.facts import StatementFacts
from pgsentry.analysis.kinds import KINDS, ORIGINS


def facts(sql: str) -> list[StatementFacts]:
    result = analyze(sql)
    assert result.parse_error is None, result.parse_error
    return list(result.statements)


def kinds(sql: str) -> list[str]:
    return [s.kind for s in facts(sql)]


# --- ON CONFLICT DO UPDATE ------------------------------------------------------------------


DO_UPDATE = " ON CONFLICT (id) DO UPDATE SET x = 1"


def upsert_where(sql: str) -> WhereClause | None:
    found = facts(sql)
    assert [s.kind for s in found][-2:] == ["insert", "update"], found
    update = found[-1]
    assert update.origin == "on_conflict"
    return update.where


@pytest.mark.parametrize(
    ("sql", "where"),
    [
        # the repro: every row of victim collides with itself
        ("INSERT INTO v SELECT * FROM v ON CONFLICT (id) DO UPDATE SET x = 'wiped'", "missing"),
        ("INSERT INTO v SELECT * FROM other" + DO_UPDATE, "missing"),
        ("INSERT INTO v SELECT * FROM v WHERE true" + DO_UPDATE, "tautological"),
        ("INSERT INTO v SELECT * FROM v WHERE id = id" + DO_UPDATE, "tautological"),
        (
            "INSERT INTO v SELECT * FROM v ON CONFLICT (id) DO UPDATE SET x = 1 WHERE 1 = 1",
            "tautological",
        ),
        ("INSERT INTO v SELECT g, 'x' FROM generate_series(1, 9) g" + DO_UPDATE, "missing"),
        ("INSERT INTO v SELECT generate_series(1, 9), 'x'" + DO_UPDATE, "missing"),
        ("INSERT INTO v SELECT * FROM unnest($1::int[])" + DO_UPDATE, "missing"),
        ("INSERT INTO v VALUES (1) UNION SELECT id FROM v" + DO_UPDATE, "missing"),
        ("WITH s AS (SELECT * FROM v) INSERT INTO v SELECT * FROM s" + DO_UPDATE, "missing"),
        ("INSERT INTO v TABLE v" + DO_UPDATE, "missing"),
        # bounded: the rows are spelled out, or a real restriction
        ("INSERT INTO v VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET x = EXCLUDED.x", "present"),
        ("INSERT INTO v VALUES (1, 'a'), (2, 'b')" + DO_UPDATE, "present"),
        ("INSERT INTO v VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET x = EXCLUDED.x", "present"),
        ("INSERT INTO v DEFAULT VALUES" + DO_UPDATE, "present"),
        ("INSERT INTO v SELECT 1, 'a'" + DO_UPDATE, "present"),
        ("INSERT INTO v SELECT 1, (SELECT max(x) FROM w)" + DO_UPDATE, "present"),
        ("INSERT INTO v SELECT * FROM (VALUES (1, 'a')) s" + DO_UPDATE, "present"),
        ("INSERT INTO v SELECT * FROM v WHERE id = 3" + DO_UPDATE, "present"),
        (
            "INSERT INTO v SELECT * FROM v ON CONFLICT (id) DO UPDATE SET x = 1 WHERE v.id = 3",
            "present",
        ),
        ("INSERT INTO v VALUES (1) UNION VALUES (2)" + DO_UPDATE, "present"),
    ],
)
def test_on_conflict_do_update_is_an_update(sql: str, where: str) -> None:
    assert upsert_where(sql) == WhereClause(where)


def test_on_conflict_update_fact_names_the_target_only() -> None:
    found = facts("INSERT INTO app.v SELECT * FROM other" + DO_UPDATE)
    assert found[0].relations == (Relation("app", "v"), Relation(None, "other"))
    assert found[1].relations == (Relation("app", "v"),)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO v SELECT * FROM v ON CONFLICT DO NOTHING",
        "INSERT INTO v SELECT * FROM v",
        "INSERT INTO v VALUES (1)",
    ],
)
def test_insert_without_do_update_is_one_insert(sql: str) -> None:
    assert kinds(sql) == ["insert"]


def test_on_conflict_inside_a_cte_and_a_function_body() -> None:
    cte = "WITH x AS (INSERT INTO v SELECT * FROM v ON CONFLICT (id) DO UPDATE SET x = 1) SELECT 1"
    assert kinds(cte) == ["select", "insert", "update"]
    body = (
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS "
        "$$INSERT INTO v SELECT * FROM v ON CONFLICT (id) DO UPDATE SET x = 1$$"
    )
    found = facts(body)
    assert [(s.kind, s.where) for s in found][1:] == [
        ("insert", None),
        ("update", WhereClause.MISSING),
    ]


def test_upserts_stay_on_the_shape_cache() -> None:
    clear_cache()
    first = analyze("INSERT INTO v VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET x = EXCLUDED.x")
    assert cache_sizes()[1] == 1
    second = analyze("INSERT INTO v VALUES (2, 'b') ON CONFLICT (id) DO UPDATE SET x = EXCLUDED.x")
    assert second is first  # the same shape: no parse
    assert [s.text for s in first.statements] == [first.statements[0].text] * 2
    assert first.statements[1].where == WhereClause.PRESENT


# --- ALTER TABLE subcommands ------------------------------------------------------------------


def test_every_alter_table_subcommand_is_classified() -> None:
    names = {m.name for m in AlterTableType}
    assert names == set(SUBCOMMANDS)
    for name, (effect, kind) in SUBCOMMANDS.items():
        assert effect in (HARMLESS, DESTROYS, WEAKENS, INTERNAL), name
        assert (kind is not None) == (effect in (DESTROYS, WEAKENS)), name
        assert kind is None or kind in KINDS, name


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("ALTER TABLE t ENABLE REPLICA TRIGGER tr", "alter_table_disable_trigger"),
        ("ALTER TABLE t DISABLE RULE r", "alter_table_disable_rule"),
        ("ALTER TABLE t ENABLE REPLICA RULE r", "alter_table_disable_rule"),
        ("ALTER TABLE t ALTER COLUMN v TYPE text USING NULL", "alter_table_alter_column_type"),
        ("ALTER TABLE t ALTER COLUMN v TYPE numeric(10, 0)", "alter_table_alter_column_type"),
        ("ALTER TABLE t ALTER v SET DATA TYPE bigint", "alter_table_alter_column_type"),
        ("ALTER TABLE t SET UNLOGGED", "alter_table_set_unlogged"),
        ("ALTER TABLE t ALTER COLUMN v DROP NOT NULL", "alter_table_drop_constraint"),
        ("ALTER TABLE t ALTER COLUMN id DROP IDENTITY", "alter_table_drop_default"),
        ("ALTER TABLE t NO FORCE ROW LEVEL SECURITY", "alter_table_disable_rls"),
        ("ALTER TABLE t DISABLE ROW LEVEL SECURITY", "alter_table_disable_rls"),
        # harmless look-alikes
        ("ALTER TABLE t ENABLE TRIGGER tr", "alter_table"),
        ("ALTER TABLE t ENABLE ALWAYS TRIGGER tr", "alter_table"),
        ("ALTER TABLE t ENABLE TRIGGER ALL", "alter_table"),
        ("ALTER TABLE t ENABLE RULE r", "alter_table"),
        ("ALTER TABLE t ENABLE ALWAYS RULE r", "alter_table"),
        ("ALTER TABLE t ENABLE ROW LEVEL SECURITY", "alter_table"),
        ("ALTER TABLE t FORCE ROW LEVEL SECURITY", "alter_table"),
        ("ALTER TABLE t SET LOGGED", "alter_table"),
        ("ALTER TABLE t ALTER COLUMN v SET NOT NULL", "alter_table"),
        ("ALTER TABLE t ALTER COLUMN v SET STATISTICS 100", "alter_table"),
        ("ALTER TABLE t ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY", "alter_table"),
        ("ALTER TABLE t DETACH PARTITION t_2020", "alter_table"),
        ("ALTER TABLE t REPLICA IDENTITY FULL", "alter_table"),
        ("ALTER FOREIGN TABLE f ALTER COLUMN v TYPE text", "alter_table"),
        ("ALTER TYPE comp ALTER ATTRIBUTE a TYPE text", "alter_other"),
    ],
)
def test_alter_table_subcommands(sql: str, expected: str) -> None:
    assert kinds(sql) == [expected]


def test_several_new_subcommands_report_each() -> None:
    found = facts("ALTER TABLE t ALTER COLUMN v TYPE text USING NULL, DISABLE RULE r, SET UNLOGGED")
    assert [(s.kind, s.origin) for s in found] == [
        ("alter_table_alter_column_type", "top"),
        ("alter_table_disable_rule", "subcommand"),
        ("alter_table_set_unlogged", "subcommand"),
    ]


# --- row-level-security policies ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("CREATE POLICY p ON s USING (true)", "weaken_policy"),
        ("CREATE POLICY p ON s AS PERMISSIVE FOR SELECT TO app USING (1 = 1)", "weaken_policy"),
        ("CREATE POLICY p ON s FOR INSERT WITH CHECK (owner = owner)", "weaken_policy"),
        ("CREATE POLICY p ON s USING (owner = current_user OR true)", "weaken_policy"),
        ("ALTER POLICY p ON s USING (true)", "weaken_policy"),
        ("ALTER POLICY p ON s WITH CHECK (true)", "weaken_policy"),
        ("ALTER POLICY p ON s TO PUBLIC", "weaken_policy"),
        ("ALTER POLICY p ON s TO app USING (owner = current_user)", "weaken_policy"),
        # near misses
        ("CREATE POLICY p ON s USING (owner = current_user)", "create_other"),
        ("CREATE POLICY p ON s AS RESTRICTIVE USING (true)", "create_other"),
        ("CREATE POLICY p ON s USING (false)", "create_other"),
        ("ALTER POLICY p ON s USING (owner = current_user)", "alter_other"),
        ("ALTER POLICY p ON s RENAME TO q", "rename"),
    ],
)
def test_policies(sql: str, expected: str) -> None:
    found = facts(sql)
    assert [s.kind for s in found] == [expected]
    if expected != "rename":
        assert found[0].relations == (Relation(None, "s"),)


# --- flagged functions bound by name -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "function"),
    [
        (
            "CREATE OPERATOR public.### (LEFTARG = int, RIGHTARG = bigint, "
            "FUNCTION = pg_terminate_backend)",
            "pg_terminate_backend",
        ),
        ("CREATE OPERATOR ~~~ (RIGHTARG = oid, PROCEDURE = pg_catalog.lo_unlink)", "lo_unlink"),
        (
            "ALTER OPERATOR ### (int, bigint) SET (RESTRICT = pg_cancel_backend)",
            "pg_cancel_backend",
        ),
        (
            "CREATE AGGREGATE a(int) (SFUNC = pg_terminate_backend, STYPE = bool)",
            "pg_terminate_backend",
        ),
        ("CREATE AGGREGATE a(int) (SFUNC = f, STYPE = int, FINALFUNC = lo_unlink)", "lo_unlink"),
        ("CREATE AGGREGATE a(int) (SFUNC = f, STYPE = int, COMBINEFUNC = lo_unlink)", "lo_unlink"),
        ("CREATE AGGREGATE a(int) (SFUNC = f, STYPE = int, MSFUNC = lo_unlink)", "lo_unlink"),
        ("CREATE AGGREGATE a (BASETYPE = int, SFUNC1 = lo_unlink, STYPE1 = int)", "lo_unlink"),
        (
            "CREATE CAST (bigint AS bool) WITH FUNCTION pg_terminate_backend(int, bigint)",
            "pg_terminate_backend",
        ),
        (
            "CREATE TRIGGER t BEFORE DELETE ON x FOR EACH ROW EXECUTE FUNCTION lo_unlink()",
            "lo_unlink",
        ),
        ("CREATE TRIGGER t AFTER INSERT ON x EXECUTE PROCEDURE pg_reload_conf()", "pg_reload_conf"),
        (
            "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION pg_reload_conf()",
            "pg_reload_conf",
        ),
        ("CREATE TYPE t (INPUT = lo_import, OUTPUT = textout)", "lo_import"),
        ("ALTER TYPE t SET (SEND = lo_export)", "lo_export"),
        (
            "CREATE TYPE r AS RANGE (SUBTYPE = int, SUBTYPE_DIFF = pg_terminate_backend)",
            "pg_terminate_backend",
        ),
        ("CREATE CONVERSION c FOR 'UTF8' TO 'LATIN1' FROM pg_read_file", "pg_read_file"),
        (
            "CREATE OPERATOR CLASS c FOR TYPE oid USING hash AS FUNCTION 1 lo_unlink(oid)",
            "lo_unlink",
        ),
        (
            "ALTER OPERATOR FAMILY f USING btree ADD FUNCTION 1 (int, int) lo_unlink(oid)",
            "lo_unlink",
        ),
        (
            "CREATE TRANSFORM FOR int LANGUAGE sql (FROM SQL WITH FUNCTION lo_unlink(oid), "
            "TO SQL WITH FUNCTION f(internal))",
            "lo_unlink",
        ),
        ("CREATE LANGUAGE l HANDLER pg_read_file", "pg_read_file"),
        ("CREATE LANGUAGE l HANDLER h VALIDATOR pg_ls_dir", "pg_ls_dir"),
        ("CREATE FOREIGN DATA WRAPPER w HANDLER lo_unlink", "lo_unlink"),
        ("ALTER FOREIGN DATA WRAPPER w VALIDATOR pg_read_file", "pg_read_file"),
        ("CREATE ACCESS METHOD am TYPE TABLE HANDLER lo_unlink", "lo_unlink"),
        ("CREATE TEXT SEARCH TEMPLATE t (LEXIZE = lo_unlink)", "lo_unlink"),
        (
            "CREATE TEXT SEARCH PARSER p (START = lo_unlink, GETTOKEN = f, END = f, LEXTYPES = g)",
            "lo_unlink",
        ),
        (
            "ALTER FUNCTION pg_catalog.pg_terminate_backend(int, bigint) RENAME TO kill",
            "pg_terminate_backend",
        ),
        ("ALTER ROUTINE lo_unlink RENAME TO tidy", "lo_unlink"),
        (
            "CREATE OPERATOR === (LEFTARG = text, RIGHTARG = text, FUNCTION = set_config)",
            "set_config",
        ),
    ],
)
def test_ddl_binding_a_flagged_function_reports_it(sql: str, function: str) -> None:
    assert function in {f for s in facts(sql) for f in s.functions}


def test_binding_dblink_is_dynamic_like_a_call() -> None:
    found = facts("CREATE OPERATOR !!! (RIGHTARG = text, FUNCTION = dblink_exec)")
    assert found[0].functions == ("dblink_exec",)
    assert found[0].dynamic_sql


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE OPERATOR @@@ (LEFTARG = int, RIGHTARG = int, FUNCTION = int4pl)",
        "CREATE AGGREGATE a(int) (SFUNC = int4pl, STYPE = int)",
        "CREATE CAST (bigint AS int4) WITH FUNCTION int4(bigint)",
        "CREATE TRIGGER t BEFORE UPDATE ON x FOR EACH ROW EXECUTE FUNCTION app.audit()",
        # a type named like a flagged function is a type, not a binding
        "CREATE OPERATOR @@@ (LEFTARG = lo_unlink, RIGHTARG = int, FUNCTION = f)",
        "ALTER FUNCTION f(int) RENAME TO lo_unlink_later",
        "ALTER TABLE pg_terminate_backend RENAME TO t",
        "COMMENT ON FUNCTION lo_unlink(oid) IS 'careful'",
    ],
)
def test_ddl_binding_harmless_functions_reports_nothing(sql: str) -> None:
    assert all(s.functions == () for s in facts(sql))


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE t (id int DEFAULT lo_unlink(1))",
        "CREATE TABLE t (id int GENERATED ALWAYS AS (lo_unlink(1)) STORED)",
        "CREATE TABLE t (id int CHECK (lo_unlink(id) = 1))",
        "ALTER TABLE t ADD CHECK (lo_unlink(id) = 1)",
        "ALTER TABLE t ALTER COLUMN id SET DEFAULT lo_unlink(1)",
        "CREATE DOMAIN d AS int CHECK (lo_unlink(VALUE) = 1)",
        "CREATE INDEX ON t (lo_unlink(id))",
        "CREATE POLICY p ON t USING (lo_unlink(id) = 1)",
        "CREATE VIEW v AS SELECT lo_unlink(1)",
    ],
)
def test_expressions_in_ddl_are_ordinary_calls(sql: str) -> None:
    assert "lo_unlink" in {f for s in facts(sql) for f in s.functions}


# --- file_fdw ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "CREATE FOREIGN TABLE app.out (line text) SERVER ff OPTIONS (program 'id')",
            ["create_other", "copy_from_program"],
        ),
        (
            "CREATE FOREIGN TABLE pw (x text) SERVER ff OPTIONS (format 'csv', filename '/x')",
            ["create_other", "copy_from_file"],
        ),
        ("ALTER FOREIGN TABLE ft OPTIONS (SET program 'id')", ["alter_table", "copy_from_program"]),
        ("ALTER FOREIGN TABLE ft OPTIONS (ADD filename '/x')", ["alter_table", "copy_from_file"]),
        ("ALTER FOREIGN TABLE ft OPTIONS (filename '/x')", ["alter_table", "copy_from_file"]),
        (
            "CREATE SERVER s FOREIGN DATA WRAPPER w OPTIONS (program 'id')",
            ["create_other", "copy_from_program"],
        ),
        (
            "CREATE USER MAPPING FOR app SERVER s OPTIONS (filename '/x')",
            ["create_other", "copy_from_file"],
        ),
        # near misses
        ("ALTER FOREIGN TABLE ft OPTIONS (DROP program)", ["alter_table"]),
        (
            "CREATE FOREIGN TABLE r (id int) SERVER pg OPTIONS (table_name 'accounts')",
            ["create_other"],
        ),
        (
            "CREATE SERVER pg FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db', dbname 'x')",
            ["create_other"],
        ),
        (
            "CREATE USER MAPPING FOR app SERVER pg OPTIONS (user 'app', password 'x')",
            ["create_other"],
        ),
        ("CREATE EXTENSION file_fdw", ["create_extension"]),
    ],
)
def test_file_fdw_options_are_reported_as_copy(sql: str, expected: list[str]) -> None:
    found = facts(sql)
    assert [s.kind for s in found] == expected
    for s in found[1:]:
        assert s.origin == "fdw_options"
        assert s.relations == found[0].relations


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE SERVER l FOREIGN DATA WRAPPER postgres_fdw "
        "OPTIONS (host 'x', options '-c session_replication_role=replica')",
        "ALTER SERVER l OPTIONS (ADD options '--session-replication-role=replica')",
        "ALTER SERVER l OPTIONS (SET options '-c client_encoding=SJIS')",
    ],
)
def test_fdw_startup_options_naming_a_flagged_setting_are_a_set_config(sql: str) -> None:
    extra = facts(sql)[1:]
    assert [(s.kind, s.origin, s.functions) for s in extra] == [
        ("set", "fdw_options", ("set_config",))
    ]


def test_fdw_startup_options_of_other_settings_are_not_flagged() -> None:
    sql = "ALTER SERVER l OPTIONS (SET options '-c search_path=app')"
    assert [s.kind for s in facts(sql)] == ["alter_other"]


def test_new_origins_are_documented() -> None:
    assert {"on_conflict", "fdw_options"} <= set(ORIGINS)
