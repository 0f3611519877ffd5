"""`x = x` in disguise, system columns, and PL/pgSQL names qualified with a label or a
record variable: the WHERE judgement reads them as restricting nothing."""

from __future__ import annotations

import pytest

from pgsentry.analysis import WhereClause, analyze, clear_cache

T, P = WhereClause.TAUTOLOGICAL, WhereClause.PRESENT


def where(sql: str) -> WhereClause | None:
    result = analyze(sql)
    assert result.parse_error is None, result.parse_error
    return next(s.where for s in result.statements if s.kind in ("delete", "update", "merge"))


@pytest.mark.parametrize(
    "cond",
    [
        "+id = id",
        "id = +id",
        "+ + id = id",
        "id IN (id)",
        "id IN (1, 2, id)",
        "id IN (+id)",
        "id BETWEEN id AND id",
        "id BETWEEN SYMMETRIC id AND id",
        "id = ALL (ARRAY[id])",
        "id = ALL (ARRAY[id, id + 0])",
        "id = ANY (ARRAY[1, id])",
        "id <= ANY (ARRAY[id])",
        "id = id + 0",
        "id = 0 + id",
        "id = id - 0",
        "id = id * 1",
        "id * 1 = 1 * id",
        "id = id + 0.0",
        "id = coalesce(id, id)",
        "coalesce(id, id, id) = id",
        "greatest(id, id) = least(id, id)",
        "lower(+owner || 'a') = lower(owner || 'a')",
        "NOT (id NOT IN (id))",
        "NOT (id NOT BETWEEN id AND id)",
        "a.id = id + 0",
        # system columns are never NULL
        "ctid IS NOT NULL",
        "a.ctid IS NOT NULL",
        "xmin IS NOT NULL",
        "xmax IS NOT NULL",
        "cmin IS NOT NULL",
        "cmax IS NOT NULL",
        "tableoid IS NOT NULL",
        "NOT (ctid IS NULL)",
        "tableoid > 0",
        "tableoid <> 0",
        "tableoid >= 0",
        "0 < tableoid",
        "0 <> a.tableoid",
        "id = 1 OR ctid IS NOT NULL",
        # the whole row: every row without a NULL column
        "a IS NOT NULL",
        "a.* IS NOT NULL",
        "NOT (a IS NOT NULL) OR a IS NOT NULL",
    ],
)
def test_tautological_disguises(cond: str) -> None:
    assert where(f"DELETE FROM accounts a WHERE {cond}") == T
    assert where(f"UPDATE accounts a SET owner = 'x' WHERE {cond}") == T


@pytest.mark.parametrize(
    "cond",
    [
        "+id = 1",
        "id IN (1, 2)",
        "id IN (owner, balance)",
        "id NOT IN (id)",  # false on every row: deletes nothing
        "id BETWEEN id AND 10",
        "id BETWEEN 1 AND id",
        "id NOT BETWEEN id AND id",
        "id = ANY (ARRAY[1, 2])",
        "id = ALL (ARRAY[id, 2])",
        "id <> ANY (ARRAY[1, id])",
        "id = ANY ($1)",
        "id = ANY ($1::int[])",
        "id = id + 1",
        "id = id + $1",
        "id = id - 1",
        "id = 0 - id",
        "id = id * 2",
        "id = id * 0",
        "id = id / 1",
        "id = id + (0 + balance)",
        "id = coalesce(id, 0)",
        "id = coalesce(balance, id)",
        "id = greatest(id, 0)",
        "id = id OPERATOR(public.+) 0",
        "id = OPERATOR(public.+) id",
        "id = nullif(id, id)",
        # a system column compared with a value is a real restriction
        "ctid = '(0,1)'",
        "ctid IN (SELECT ctid FROM accounts LIMIT 100)",
        "ctid = ANY ($1)",
        "xmin = 1234",
        "xmin::text = '1234'",
        "tableoid = 'accounts_2024'::regclass",
        "tableoid > -1",  # -1 is 4294967295 as an oid
        "tableoid > 1",
        "tableoid > 0.5",
        "tableoid > '0'",
        "ctid IS NULL",
        "id = 1 AND ctid IS NOT NULL",
        "owner IS NOT NULL",
    ],
)
def test_real_restrictions_stay_present(cond: str) -> None:
    assert where(f"DELETE FROM accounts a WHERE {cond}") == P


def test_system_columns_of_another_item_are_not_the_target() -> None:
    # orders.ctid is never NULL either: the condition restricts nothing of accounts,
    # which the join to orders already judges.
    sql = "DELETE FROM accounts USING orders o WHERE accounts.id = o.account_id AND {}"
    assert where(sql.format("o.ctid IS NOT NULL")) == P
    assert where("DELETE FROM accounts USING orders o WHERE o.ctid IS NOT NULL") == T


def test_folded_constants_keep_texts_of_the_same_shape_apart() -> None:
    clear_cache()
    assert where("DELETE FROM accounts WHERE id = id + 0") == T
    assert where("DELETE FROM accounts WHERE id = id + 5") == P
    assert where("DELETE FROM accounts WHERE id = id * 1") == T
    assert where("DELETE FROM accounts WHERE id = id * 3") == P
    clear_cache()
    assert where("DELETE FROM accounts WHERE tableoid > 7") == P
    assert where("DELETE FROM accounts WHERE tableoid > 0") == T
    clear_cache()
    assert where("DELETE FROM accounts WHERE id IN (id, 7)") == T
    assert where("DELETE FROM accounts WHERE id IN (3, 7)") == P


def test_deeply_nested_coalesce_stays_cheap() -> None:
    expr = "id"
    for _ in range(60):
        expr = f"coalesce({expr}, balance)"
    assert where(f"DELETE FROM accounts WHERE id = {expr}") == P  # each level read once
    assert where(f"DELETE FROM accounts WHERE {expr} = {expr}") == T


# --- PL/pgSQL: label.name, record.field ------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # the block label names the target: with use_variable, accounts.id is the variable
        (
            "DO $$ #variable_conflict use_variable\n<<accounts>> DECLARE id int := 1; "
            "BEGIN DELETE FROM accounts WHERE accounts.id = 1; END $$",
            T,
        ),
        (
            "DO $$ <<accounts>> DECLARE id int := 1; "
            "BEGIN DELETE FROM accounts WHERE accounts.id = 1; END $$",
            T,
        ),
        # a record variable named like the target's alias
        (
            "DO $$ DECLARE a record; BEGIN SELECT 1 AS id INTO a; "
            "DELETE FROM accounts a WHERE a.id = 1; END $$",
            T,
        ),
        # the function's own name, qualifying a parameter
        (
            "CREATE FUNCTION accounts(id int) RETURNS void LANGUAGE plpgsql AS "
            "$f$ BEGIN DELETE FROM accounts WHERE accounts.id = 1; END $f$",
            T,
        ),
        (
            "CREATE FUNCTION accounts(id int) RETURNS void LANGUAGE sql AS "
            "$f$ DELETE FROM accounts WHERE accounts.id = 1 $f$",
            T,
        ),
        # an unqualified name that is a variable and a column: the variable
        ("DO $$ DECLARE id int := 1; BEGIN DELETE FROM accounts WHERE id = 1; END $$", T),
        ("DO $$ DECLARE id int := 1; BEGIN DELETE FROM accounts WHERE id = id; END $$", T),
        # the same bodies with labels / records named like nothing in the statement
        (
            "DO $$ <<blk>> DECLARE k int := 1; "
            "BEGIN DELETE FROM accounts WHERE accounts.id = blk.k; END $$",
            P,
        ),
        (
            "DO $$ DECLARE r record; BEGIN FOR r IN SELECT account_id FROM orders LOOP "
            "DELETE FROM accounts a WHERE a.id = r.account_id; END LOOP; END $$",
            P,
        ),
        (
            "CREATE FUNCTION purge(k int) RETURNS void LANGUAGE plpgsql AS "
            "$f$ BEGIN DELETE FROM accounts WHERE accounts.id = purge.k; END $f$",
            P,
        ),
    ],
)
def test_label_and_record_qualifiers_are_variables(sql: str, expected: WhereClause) -> None:
    assert where(sql) == expected


def test_outside_a_body_the_qualifier_is_the_target() -> None:
    assert where("DELETE FROM accounts WHERE accounts.id = 1") == P
