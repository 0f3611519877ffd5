"""Kinds, relations, cascade, objects: one statement shape per case."""

from __future__ import annotations

import pytest

from pgsentry.analysis import Relation, analyze
from pgsentry.analysis.kinds import KINDS, ORIGINS


def kinds(sql: str) -> list[str]:
    result = analyze(sql)
    assert result.parse_error is None, result.parse_error
    return [s.kind for s in result.statements]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", ["select"]),
        ("VALUES (1)", ["select"]),
        ("TABLE accounts", ["select"]),
        ("INSERT INTO t VALUES (1)", ["insert"]),
        ("UPDATE t SET a = 1 WHERE id = 2", ["update"]),
        ("DELETE FROM t WHERE id = 2", ["delete"]),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", ["merge"]),
        ("TRUNCATE t", ["truncate"]),
        ("DROP TABLE t", ["drop_table"]),
        ("DROP FOREIGN TABLE t", ["drop_table"]),
        ("DROP SCHEMA s", ["drop_schema"]),
        ("DROP DATABASE d", ["drop_database"]),
        ("DROP INDEX i", ["drop_index"]),
        ("DROP VIEW v", ["drop_view"]),
        ("DROP MATERIALIZED VIEW v", ["drop_materialized_view"]),
        ("DROP SEQUENCE s", ["drop_sequence"]),
        ("DROP FUNCTION f(int)", ["drop_function"]),
        ("DROP PROCEDURE p()", ["drop_procedure"]),
        ("DROP TRIGGER tr ON t", ["drop_trigger"]),
        ("DROP POLICY p ON t", ["drop_policy"]),
        ("DROP ROLE r", ["drop_role"]),
        ("DROP USER r", ["drop_role"]),
        ("DROP OWNED BY r", ["drop_owned"]),
        ("DROP EXTENSION e", ["drop_extension"]),
        ("DROP TYPE ty", ["drop_type"]),
        ("DROP DOMAIN d", ["drop_type"]),
        ("DROP RULE r ON t", ["drop_rule"]),
        ("DROP TABLESPACE ts", ["drop_other"]),
        ("ALTER TABLE t ADD COLUMN c int", ["alter_table"]),
        ("ALTER TABLE t DROP COLUMN c", ["alter_table_drop_column"]),
        ("ALTER TABLE t DISABLE TRIGGER ALL", ["alter_table_disable_trigger"]),
        ("ALTER TABLE t DISABLE TRIGGER USER", ["alter_table_disable_trigger"]),
        ("ALTER TABLE t DISABLE TRIGGER tr", ["alter_table_disable_trigger"]),
        ("ALTER TABLE t DISABLE ROW LEVEL SECURITY", ["alter_table_disable_rls"]),
        ("ALTER TABLE t RENAME TO u", ["rename"]),
        ("ALTER INDEX i SET (fillfactor = 50)", ["alter_other"]),
        ("ALTER ROLE r SUPERUSER", ["alter_role"]),
        ("ALTER SYSTEM SET work_mem = '1GB'", ["alter_system"]),
        ("REASSIGN OWNED BY a TO b", ["reassign_owned"]),
        ("CREATE TABLE t (id int)", ["create_table"]),
        ("CREATE INDEX ON t (id)", ["create_index"]),
        ("CREATE VIEW v AS SELECT 1", ["create_view"]),
        ("CREATE TABLE t2 AS SELECT * FROM t", ["create_table_as"]),
        ("SELECT * INTO t2 FROM t", ["create_table_as"]),
        ("CREATE MATERIALIZED VIEW mv AS SELECT 1", ["create_table_as"]),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            ["create_function", "select"],
        ),
        (
            "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            ["create_or_replace_function", "select"],
        ),
        (
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
            ["create_trigger"],
        ),
        ("CREATE EXTENSION dblink", ["create_extension"]),
        ("CREATE ROLE r LOGIN", ["create_role"]),
        ("CREATE SCHEMA s", ["create_other"]),
        ("CREATE SEQUENCE s", ["create_other"]),
        ("GRANT SELECT ON t TO r", ["grant"]),
        ("REVOKE SELECT ON t FROM r", ["revoke"]),
        ("GRANT admin TO r", ["grant"]),
        ("SET ROLE admin", ["set_role"]),
        ("SET SESSION AUTHORIZATION admin", ["set_role"]),
        ("SET work_mem = '64MB'", ["set"]),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", ["set"]),
        ("RESET work_mem", ["reset"]),
        ("RESET ALL", ["reset"]),
        ("SHOW search_path", ["show"]),
        ("PREPARE p AS SELECT 1", ["prepare", "select"]),
        ("EXECUTE p", ["execute"]),
        ("DEALLOCATE p", ["deallocate"]),
        ("DISCARD ALL", ["discard"]),
        ("LISTEN ch", ["listen"]),
        ("UNLISTEN ch", ["unlisten"]),
        ("NOTIFY ch, 'x'", ["notify"]),
        ("LOAD 'auto_explain'", ["load"]),
        ("BEGIN", ["begin"]),
        ("START TRANSACTION", ["begin"]),
        ("COMMIT", ["commit"]),
        ("END", ["commit"]),
        ("ROLLBACK", ["rollback"]),
        ("SAVEPOINT s", ["savepoint"]),
        ("RELEASE SAVEPOINT s", ["release_savepoint"]),
        ("ROLLBACK TO SAVEPOINT s", ["rollback_to_savepoint"]),
        ("PREPARE TRANSACTION 'x'", ["prepare_transaction"]),
        ("COMMIT PREPARED 'x'", ["commit_prepared"]),
        ("ROLLBACK PREPARED 'x'", ["rollback_prepared"]),
        ("VACUUM t", ["vacuum"]),
        ("ANALYZE t", ["analyze"]),
        ("REINDEX TABLE t", ["reindex"]),
        ("CLUSTER t USING i", ["cluster"]),
        ("REFRESH MATERIALIZED VIEW mv", ["refresh_materialized_view"]),
        ("CHECKPOINT", ["checkpoint"]),
        ("LOCK TABLE t", ["lock"]),
        ("COMMENT ON TABLE t IS 'x'", ["comment"]),
        ("DECLARE c CURSOR FOR SELECT 1", ["declare_cursor"]),
        ("FETCH 10 FROM c", ["fetch"]),
        ("CLOSE c", ["close_cursor"]),
        ("CALL p(1)", ["call"]),
        ("EXPLAIN SELECT 1", ["explain"]),
        ("EXPLAIN DELETE FROM t", ["explain"]),
        ("COPY t FROM STDIN", ["copy_from"]),
        ("COPY t TO STDOUT", ["copy_to"]),
        ("COPY t FROM '/tmp/x'", ["copy_from_file"]),
        ("COPY t TO '/tmp/x'", ["copy_to_file"]),
        ("COPY t FROM PROGRAM 'cat /etc/passwd'", ["copy_from_program"]),
        ("COPY t TO PROGRAM 'sh'", ["copy_to_program"]),
        ("CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING", ["create_rule"]),
        ("ALTER EVENT TRIGGER guard DISABLE", ["disable_event_trigger"]),
        ("ALTER EVENT TRIGGER guard ENABLE REPLICA", ["disable_event_trigger"]),
        ("ALTER EVENT TRIGGER guard ENABLE ALWAYS", ["alter_other"]),
        ("ALTER EVENT TRIGGER guard ENABLE", ["alter_other"]),
        ("ALTER EVENT TRIGGER guard OWNER TO admin", ["alter_other"]),
        ("ALTER DOMAIN d DROP CONSTRAINT c", ["alter_domain_drop_constraint"]),
        ("ALTER DOMAIN app.d DROP NOT NULL", ["alter_domain_drop_constraint"]),
        ("ALTER DOMAIN d DROP DEFAULT", ["alter_domain_drop_default"]),
        ("ALTER DOMAIN d SET DEFAULT 0", ["alter_other"]),
        ("ALTER DOMAIN d SET NOT NULL", ["alter_other"]),
        ("ALTER DOMAIN d ADD CONSTRAINT c CHECK (VALUE > 0)", ["alter_other"]),
        ("ALTER DOMAIN d VALIDATE CONSTRAINT c", ["alter_other"]),
        ("ALTER ROLE app BYPASSRLS", ["alter_role", "role_bypass_rls"]),
        ("ALTER USER app WITH LOGIN BYPASSRLS", ["alter_role", "role_bypass_rls"]),
        ("CREATE ROLE app LOGIN BYPASSRLS", ["create_role", "role_bypass_rls"]),
        ("CREATE USER app NOBYPASSRLS", ["create_role"]),
        ("ALTER ROLE app NOBYPASSRLS", ["alter_role"]),
        ("IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO app", ["other"]),
    ],
)
def test_kind(sql: str, expected: list[str]) -> None:
    assert kinds(sql) == expected


def test_every_kind_produced_is_documented() -> None:
    for sql in (
        "SELECT 1",
        "DROP TABLE t",
        "ALTER TABLE t DROP COLUMN c, DISABLE TRIGGER ALL",
        "DROP RULE r ON t",
        "ALTER EVENT TRIGGER g DISABLE",
        "ALTER DOMAIN d DROP NOT NULL",
        "ALTER DOMAIN d DROP DEFAULT",
        "ALTER ROLE r BYPASSRLS",
        "UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'x'",
    ):
        for s in analyze(sql).statements:
            assert s.kind in KINDS
            assert s.origin in ORIGINS


def test_relations_qualified_and_unqualified() -> None:
    s = analyze('DELETE FROM app.users u USING "Orders" o WHERE u.id = o.account_id').statements[0]
    assert s.relations == (Relation("app", "users"), Relation(None, "Orders"))


def test_quoted_and_unicode_escaped_identifiers_resolve() -> None:
    s = analyze('DROP TABLE "ACCOUNTS", U&"\\0061ccounts"').statements[0]
    assert s.relations == (Relation(None, "ACCOUNTS"), Relation(None, "accounts"))


def test_three_part_names_keep_schema_and_name() -> None:
    s = analyze("DROP TABLE db.app.users").statements[0]
    assert s.relations == (Relation("app", "users"),)


def test_tables_read_in_subqueries_and_joins() -> None:
    s = analyze(
        "SELECT * FROM a JOIN b ON a.id = b.id WHERE EXISTS (SELECT 1 FROM app.c) "
        "AND a.x IN (SELECT x FROM (SELECT x FROM d) q)"
    ).statements[0]
    names = {str(r) for r in s.relations}
    assert names == {"a", "b", "app.c", "d"}


def test_cte_name_is_not_a_relation() -> None:
    s = analyze("WITH accounts AS (SELECT 1 AS id) SELECT * FROM accounts").statements[0]
    assert s.relations == ()


def test_qualified_name_is_never_a_cte() -> None:
    s = analyze("WITH accounts AS (SELECT 1) SELECT * FROM public.accounts").statements[0]
    assert s.relations == (Relation("public", "accounts"),)


def test_cte_scope_does_not_leak_to_outer_query() -> None:
    s = analyze("SELECT * FROM accounts, (WITH accounts AS (SELECT 1) SELECT * FROM accounts) q")
    assert s.statements[0].relations == (Relation(None, "accounts"),)


def test_non_recursive_cte_does_not_see_later_ctes() -> None:
    s = analyze("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a").statements[0]
    assert s.relations == (Relation(None, "b"),)


def test_dml_target_named_like_a_cte_is_the_real_table() -> None:
    result = analyze("WITH accounts AS (SELECT 1) DELETE FROM accounts")
    s = result.statements[0]
    assert s.kind == "delete"
    assert s.relations == (Relation(None, "accounts"),)
    assert s.where is not None and s.where.value == "missing"


def test_cascade() -> None:
    assert analyze("DROP TABLE t CASCADE").statements[0].cascade
    assert analyze("TRUNCATE t CASCADE").statements[0].cascade
    assert analyze("DROP SCHEMA s CASCADE").statements[0].cascade
    assert analyze("DROP OWNED BY r CASCADE").statements[0].cascade
    assert not analyze("DROP TABLE t").statements[0].cascade
    assert not analyze("TRUNCATE t RESTRICT").statements[0].cascade


def test_objects_name_non_relation_targets() -> None:
    assert analyze("DROP SCHEMA app, s2").statements[0].objects == ("app", "s2")
    assert analyze("DROP DATABASE prod").statements[0].objects == ("prod",)
    assert analyze("DROP ROLE a, b").statements[0].objects == ("a", "b")
    assert analyze("DROP FUNCTION app.f(int)").statements[0].objects == ("app.f",)
    trig = analyze("DROP TRIGGER audit ON app.accounts").statements[0]
    assert trig.objects == ("audit",)
    assert trig.relations == (Relation("app", "accounts"),)


def test_alter_table_with_several_dangerous_subcommands_reports_each() -> None:
    result = analyze("ALTER TABLE t DROP COLUMN c, DISABLE TRIGGER ALL, DISABLE ROW LEVEL SECURITY")
    assert [(s.kind, s.origin) for s in result.statements] == [
        ("alter_table_disable_trigger", "top"),
        ("alter_table_drop_column", "subcommand"),
        ("alter_table_disable_rls", "subcommand"),
    ]


def test_multi_statement_texts_are_sliced() -> None:
    result = analyze("SELECT 'é';  DROP TABLE t ; SELECT 2")
    assert [s.text for s in result.statements] == ["SELECT 'é'", "DROP TABLE t", "SELECT 2"]


def test_empty_text_has_no_statements_and_no_error() -> None:
    for sql in ("", "   ", ";", "-- only a comment", "/* c */ ;"):
        result = analyze(sql)
        assert result.parse_error is None
        assert result.statements == ()


def test_every_kind_the_extractor_can_produce_is_documented() -> None:
    from pgsentry.analysis import alter, statements
    from pgsentry.analysis import kinds as K

    produced = {
        K.DROP_RULE,
        K.DISABLE_EVENT_TRIGGER,
        K.ALTER_DOMAIN_DROP_CONSTRAINT,
        K.ALTER_DOMAIN_DROP_DEFAULT,
        K.ROLE_BYPASS_RLS,
        K.WRITE_CATALOG,
        *statements.SIMPLE.values(),
        *statements._DROP_KINDS.values(),
        *statements._TRANSACTION_KINDS.values(),
        *(kind for _, kind in alter.SUBCOMMANDS.values() if kind is not None),
        *alter.PRIORITY,
    }
    assert produced <= set(KINDS)


def test_every_kind_is_documented_in_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [kind for kind in KINDS if f"`{kind}`" not in readme]
    assert missing == []


def test_domain_and_event_trigger_name_their_objects() -> None:
    assert analyze("ALTER DOMAIN app.email DROP NOT NULL").statements[0].objects == ("app.email",)
    assert analyze("ALTER EVENT TRIGGER guard DISABLE").statements[0].objects == ("guard",)
    bypass = analyze("ALTER ROLE app BYPASSRLS").statements[1]
    assert (bypass.kind, bypass.origin, bypass.objects) == (
        "role_bypass_rls",
        "subcommand",
        ("app",),
    )
    cascade = analyze("ALTER DOMAIN d DROP CONSTRAINT c CASCADE").statements[0]
    assert cascade.cascade
