"""WHERE judgement of DELETE / UPDATE / MERGE: missing, tautological, present."""

from __future__ import annotations

import pytest

from pgsentry.analysis import WhereClause, analyze


def where(sql: str) -> WhereClause | None:
    result = analyze(sql)
    assert result.parse_error is None, result.parse_error
    return result.statements[0].where


@pytest.mark.parametrize(
    "cond",
    [
        "true",
        "TRUE",
        "1=1",
        "1 = 1",
        "'a'='a'",
        "id = id",
        "accounts.id = id",
        "a.id = a.id",
        "id >= id",
        "id IS NOT DISTINCT FROM id",
        "id = 5 OR true",
        "id = 5 OR 1=1",
        "NOT false",
        "NOT (id <> id)",
        "1 IN (1)",
        "1 IN (3, 2, 1)",
        "2 > 1",
        "'t'::boolean",
        "'yes'::bool",
        "1::boolean",
        "coalesce(true)",
        "COALESCE(NULL, true)",
        "(1=1) = true",
        "(id = id) IS TRUE",
        "true AND true",
        "1 BETWEEN 0 AND 2",
        "1 + 1 = 2",
        "'a' || 'b' = 'ab'",
        "-1 < 0",
        "NULL IS NULL",
        "1 IS NOT NULL",
        "now() IS NOT NULL",
        "random() < 2",
        "$1",
        "$1 = $2",
        "EXISTS (SELECT 1)",
        "EXISTS (SELECT 1 FROM orders)",
        "(SELECT count(*) FROM orders) >= 0",
        "owner LIKE '%'",
        "owner ILIKE '%%'",
        "owner IS NULL OR owner IS NOT NULL",
        "id IN (SELECT id FROM accounts)",
        "'1' = 1",
        "true = 't'",
        "1 = 1.0",
        "id = id AND owner = owner",
        "NOT NOT true",
        "'abc' <> 'abd'",
        "nullif(1, 2) = 1",
    ],
)
def test_tautological(cond: str) -> None:
    assert where(f"DELETE FROM accounts a WHERE {cond}") == WhereClause.TAUTOLOGICAL
    assert where(f"UPDATE accounts a SET balance = 0 WHERE {cond}") == WhereClause.TAUTOLOGICAL


@pytest.mark.parametrize(
    "cond",
    [
        "id = 5",
        "id = $1",
        "id IN (1, 2, 3)",
        "owner = 'alice' AND balance < 0",
        "id = 5 OR id = 6",
        "id = 5 AND true",
        "false",
        "1 = 0",
        "NULL",
        "1 = NULL",
        "NOT true",
        "'a' = 'b'",
        "id <> id",
        "id IN (SELECT account_id FROM orders WHERE total > 100)",
        "EXISTS (SELECT 1 FROM orders o WHERE o.account_id = accounts.id)",
        "owner LIKE 'a%'",
        "owner IS NULL",
        "lower(owner) = 'bob'",
        "id = id + 1",
    ],
)
def test_present(cond: str) -> None:
    assert where(f"DELETE FROM accounts WHERE {cond}") == WhereClause.PRESENT
    assert where(f"UPDATE accounts SET balance = 0 WHERE {cond}") == WhereClause.PRESENT


def test_missing() -> None:
    assert where("DELETE FROM accounts") == WhereClause.MISSING
    assert where("UPDATE accounts SET balance = 0") == WhereClause.MISSING
    assert where("DELETE FROM ONLY accounts") == WhereClause.MISSING


def test_where_current_of_is_present() -> None:
    assert where("DELETE FROM accounts WHERE CURRENT OF c") == WhereClause.PRESENT
    assert where("UPDATE accounts SET balance = 0 WHERE CURRENT OF c") == WhereClause.PRESENT


def test_using_clause_does_not_count_as_where() -> None:
    assert where("DELETE FROM accounts USING orders") == WhereClause.MISSING


def test_merge_judges_its_on_condition() -> None:
    sql = "MERGE INTO accounts a USING orders o ON {} WHEN MATCHED THEN DELETE"
    assert where(sql.format("true")) == WhereClause.TAUTOLOGICAL
    assert where(sql.format("a.id = o.account_id")) == WhereClause.PRESENT


def test_only_delete_update_merge_have_a_where_judgement() -> None:
    assert where("SELECT * FROM accounts") is None
    assert where("INSERT INTO accounts VALUES (1)") is None
