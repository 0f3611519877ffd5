"""Writes to system catalogs (`write_catalog`), views a catalog or pg_settings could be
written through, and catalog reads that stay ordinary."""

from __future__ import annotations

import pytest

from pgsentry.analysis import Relation, analyze


def facts(sql: str) -> list[tuple[str, str]]:
    result = analyze(sql)
    assert result.parse_error is None, result.parse_error
    return [(s.kind, s.origin) for s in result.statements]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'protect'",
            [("update", "top"), ("write_catalog", "top")],
        ),
        (
            "DELETE FROM pg_catalog.pg_class WHERE relname = 'accounts'",
            [("delete", "top"), ("write_catalog", "top")],
        ),
        (
            "UPDATE pg_proc SET prosrc = 'select 1' WHERE proname = 'f'",
            [("update", "top"), ("write_catalog", "top")],
        ),
        (
            "INSERT INTO pg_catalog.pg_description VALUES (1, 1259, 0, 'x')",
            [("insert", "top"), ("write_catalog", "top")],
        ),
        (
            "INSERT INTO pg_description VALUES (1, 1259, 0, 'x') ON CONFLICT DO NOTHING",
            [("insert", "top"), ("write_catalog", "top")],
        ),
        (
            "MERGE INTO pg_class c USING accounts a ON c.oid = a.id WHEN MATCHED THEN DELETE",
            [("merge", "top"), ("write_catalog", "top")],
        ),
        (
            "TRUNCATE accounts, pg_catalog.pg_statistic",
            [("truncate", "top"), ("write_catalog", "top")],
        ),
        ("COPY pg_catalog.pg_trigger FROM STDIN", [("copy_from", "top"), ("write_catalog", "top")]),
        (
            "DELETE FROM pg_toast.pg_toast_16384 WHERE chunk_id = 1",
            [("delete", "top"), ("write_catalog", "top")],
        ),
        (
            "WITH d AS (DELETE FROM pg_depend WHERE objid = 1 RETURNING 1) SELECT 1",
            [("select", "top"), ("delete", "cte"), ("write_catalog", "cte")],
        ),
        (
            "DO $$ BEGIN UPDATE pg_catalog.pg_trigger SET tgenabled = 'D'; END $$",
            [("do_block", "top"), ("update", "do_block"), ("write_catalog", "do_block")],
        ),
        (
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS "
            "$$ DELETE FROM pg_class WHERE relname = 'x' $$",
            [
                ("create_function", "top"),
                ("delete", "function_body"),
                ("write_catalog", "function_body"),
            ],
        ),
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM pg_trigger WHERE tgname = 'x'",
            [("create_rule", "top"), ("delete", "rule_action"), ("write_catalog", "rule_action")],
        ),
        (
            "EXPLAIN ANALYZE UPDATE pg_index SET indisvalid = false WHERE indexrelid = 1",
            [("explain", "top"), ("update", "explain"), ("write_catalog", "explain")],
        ),
        (
            "PREPARE p AS DELETE FROM pg_class WHERE oid = $1",
            [("prepare", "top"), ("delete", "prepare"), ("write_catalog", "prepare")],
        ),
    ],
)
def test_catalog_writes(sql: str, expected: list[tuple[str, str]]) -> None:
    assert facts(sql) == expected


def test_the_fact_names_the_catalog_written_only() -> None:
    result = analyze("TRUNCATE accounts, pg_catalog.pg_statistic, pg_statistic_ext")
    extra = result.statements[1]
    assert extra.kind == "write_catalog"
    assert extra.relations == (
        Relation("pg_catalog", "pg_statistic"),
        Relation(None, "pg_statistic_ext"),
    )
    upd = analyze("UPDATE pg_trigger SET tgenabled = 'D' FROM pg_class c WHERE c.oid = tgrelid")
    assert upd.statements[1].relations == (Relation(None, "pg_trigger"),)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM pg_class WHERE relname = 'accounts'",
        "SELECT tgname FROM pg_catalog.pg_trigger WHERE tgrelid = 'accounts'::regclass",
        "SELECT * FROM pg_stat_activity",
        "COPY pg_catalog.pg_class TO STDOUT",
        "COPY (SELECT * FROM pg_proc) TO STDOUT",
        "UPDATE accounts SET owner = 'x' WHERE id IN (SELECT oid::int FROM pg_class)",
        "DELETE FROM accounts USING pg_class c WHERE accounts.id = c.oid::int",
        "INSERT INTO accounts SELECT oid::int, relname, 0 FROM pg_class LIMIT 1",
        "INSERT INTO pg_temp.scratch VALUES (1)",
        "DELETE FROM public.pg_like WHERE id = 1",
        "CREATE VIEW rels AS SELECT c.relname, n.nspname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace",
        "CREATE VIEW counts AS SELECT count(*) FROM pg_class",
        "CREATE VIEW per_kind AS SELECT relkind, count(relname) FROM pg_class GROUP BY relkind",
        "CREATE VIEW first10 AS SELECT relname FROM pg_class LIMIT 10",
        "CREATE VIEW d AS SELECT DISTINCT relkind FROM pg_class",
        "CREATE VIEW u AS SELECT relname FROM pg_class UNION SELECT proname FROM pg_proc",
        "CREATE VIEW w AS WITH x AS (SELECT relname FROM pg_class) SELECT * FROM x",
        "CREATE VIEW mine AS SELECT * FROM accounts WHERE id IN (SELECT oid::int FROM pg_class)",
        "CREATE MATERIALIZED VIEW m AS SELECT * FROM pg_class",
    ],
)
def test_reading_catalogs_is_no_write(sql: str) -> None:
    result = analyze(sql)
    assert result.parse_error is None, result.parse_error
    assert "write_catalog" not in [s.kind for s in result.statements]
    assert all(s.functions == () for s in result.statements)


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE VIEW triggers AS SELECT * FROM pg_trigger",
        "CREATE OR REPLACE VIEW triggers AS SELECT tgname, tgenabled FROM pg_catalog.pg_trigger "
        "WHERE NOT tgisinternal",
        "CREATE VIEW procs AS SELECT p.* FROM ONLY pg_proc p",
        "CREATE VIEW procs AS SELECT prosrc, (SELECT count(*) FROM pg_class) FROM pg_proc",
        'CREATE RULE "_RETURN" AS ON SELECT TO t DO INSTEAD SELECT * FROM pg_trigger',
    ],
)
def test_a_view_a_catalog_can_be_written_through(sql: str) -> None:
    kinds = [s.kind for s in analyze(sql).statements]
    assert kinds[1] == "write_catalog", kinds


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE VIEW my_settings AS SELECT * FROM pg_settings",
        "CREATE OR REPLACE VIEW my_settings AS SELECT name, setting FROM pg_catalog.pg_settings "
        "WHERE source <> 'default'",
        "CREATE VIEW my_settings AS SELECT * FROM pg_settings; "
        "UPDATE my_settings SET setting = 'replica' WHERE name = 'session_replication_role'",
        'CREATE RULE "_RETURN" AS ON SELECT TO t DO INSTEAD SELECT * FROM pg_settings',
        "UPDATE pg_settings SET setting = 'x' WHERE name = 'work_mem'",
    ],
)
def test_a_view_over_pg_settings_is_a_set_config(sql: str) -> None:
    result = analyze(sql)
    assert "set_config" in result.statements[0].functions
    assert "write_catalog" not in [s.kind for s in result.statements]  # a set_config, not DML


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE VIEW s AS SELECT s.name FROM pg_settings s JOIN accounts a ON a.owner = s.name",
        "CREATE VIEW s AS SELECT count(*) FROM pg_settings",
        "CREATE VIEW s AS SELECT * FROM accounts WHERE owner IN (SELECT name FROM pg_settings)",
        "CREATE VIEW s AS SELECT * FROM public.pg_settings",
    ],
)
def test_views_that_cannot_reach_pg_settings_are_plain(sql: str) -> None:
    assert analyze(sql).statements[0].functions == ()
