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
        "1 <> NULL",  # (`1 = NULL` reads `1 IS NULL` under transform_null_equals)
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


def wheres(sql: str) -> list[WhereClause]:
    """The WHERE judgements of every statement in `sql`, nested ones (bodies) included."""
    result = analyze(sql)
    assert result.parse_error is None, result.parse_error
    return [s.where for s in result.statements if s.where is not None]


# --- constant folding is exactly PostgreSQL's, or "may be true" ---------------------------

T, P = WhereClause.TAUTOLOGICAL, WhereClause.PRESENT


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        # numeric is exact in PostgreSQL: no float rounding
        ("0.1 + 0.2 = 0.3", T),
        ("0.1 + 0.2 <> 0.3", P),
        ("0.1 + 0.2 = 0.30000000000000004", P),
        ("0.1 * 3 = 0.3", T),
        ("1.0 - 0.9 = 0.1", T),
        ("9007199254740993 > 9007199254740992", T),
        ("9007199254740993 = 9007199254740992", P),
        ("99999999999999999999999 > 99999999999999999999998", T),
        ("-2147483648 < 0", T),
        ("1 = 1.0", T),
        ("1 = 2", P),
        ("1e3 = 1000", T),
        # overflow: PostgreSQL raises an error; never a claim of "false"
        ("2147483647 + 1 < 0", T),
        ("9223372036854775807 + 1 < 0", T),
        ("32767::int2 + 1::int2 < 0", T),
        ("- (-2147483647 - 1) < 0", T),
        # not modelled: division, modulo, float, typmods, bpchar, name, collation order
        ("7 / 2 = 3", T),
        ("7 / 2 = 4", T),
        ("-7 % 2 = 1", T),
        ("0.1::float8 + 0.2 = 0.3", T),
        ("0.1::float8 + 0.2 <> 0.3", T),
        ("1.26::numeric(3,1) = 1.3", T),
        ("1.26::numeric(3,1) = 1.26", T),
        ("'abc'::varchar(2) = 'ab'", T),
        ("'a'::char(3) = 'a  '", T),
        ("'a  '::bpchar = 'a'", T),
        ("'b' < 'a'", T),
        ("'a' < 'b'", T),
        ("1.5::int = 2", T),
        ("'1' = 1", T),
        ("1 OPERATOR(public.=) 2", T),
        ("1::public.int4 = 2", T),
        ("'a' = 'b'", P),
        ("'a'::text <> 'a'", P),
        ("coalesce(NULL, 0.1) + 0.2 = 0.3", T),
        ("coalesce(0.1, NULL::float8) + 0.2 = 0.30000000000000004", T),
        ("nullif(1, 1.0) IS NULL", T),
        ("' 12 '::int = 12", T),
        ("'1_000'::int = 1000", T),
        ("1 BETWEEN 0.5 AND 1.5", T),
        ("1 NOT BETWEEN 0.5 AND 1.5", P),
        ("0.3 IN (0.1 + 0.2)", T),
        ("0.3 NOT IN (0.1 + 0.2)", P),
        ("0.1 + 0.2 IS DISTINCT FROM 0.3", P),
        ("1e100000 > 0", T),
    ],
)
def test_folding_is_exact(cond: str, expected: WhereClause) -> None:
    assert where(f"DELETE FROM victim WHERE {cond}") == expected
    assert where(f"UPDATE victim SET v = 'x' WHERE {cond}") == expected
    merge = f"MERGE INTO victim t USING src s ON {cond} WHEN MATCHED THEN DELETE"
    assert where(merge) == expected


def test_where_that_folds_to_false_is_present() -> None:
    # It changes no row: nothing to protect (the folding is exact, see fold.py).
    for cond in ("false", "1 = 2", "NULL", "0.1 + 0.2 <> 0.3", "NOT true"):
        assert where(f"DELETE FROM victim WHERE {cond}") == P, cond


# --- only a condition on the TARGET row restricts -----------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # columns of other FROM / USING items
        ("DELETE FROM victim USING (VALUES (1)) s(k) WHERE s.k = 1", T),
        ("DELETE FROM victim USING (VALUES (1)) s(k) WHERE k = 1", T),
        ("DELETE FROM victim USING (VALUES (1)) s(k) WHERE s IS NOT NULL", T),
        ("DELETE FROM victim USING (VALUES (1)) s(k) WHERE s.k = 1 AND k = 1", T),
        ("DELETE FROM victim USING (SELECT 1 AS k) s WHERE k = 1", T),
        ("DELETE FROM victim USING generate_series(1, 3) g(k) WHERE g.k = 1", T),
        ("DELETE FROM victim USING orders o WHERE o.total > 0", T),
        ("DELETE FROM victim v USING victim v2 WHERE v2.id = 1", T),
        ("UPDATE victim SET v = 'x' FROM (VALUES (1)) s(k) WHERE s.k = 1", T),
        ("UPDATE victim SET v = 'x' FROM orders o JOIN accounts a ON true WHERE a.id = 1", T),
        ("MERGE INTO victim t USING src s ON s.k = 1 WHEN MATCHED THEN DELETE", T),
        ("MERGE INTO victim t USING (VALUES (1)) s(k) ON k = 1 WHEN MATCHED THEN DELETE", T),
        ("DELETE FROM victim t USING (VALUES (1)) s(k) WHERE t.id = s.k", P),
        ("DELETE FROM victim USING (VALUES (1)) s(k) WHERE victim.id = s.k", P),
        ("DELETE FROM victim USING (VALUES (1)) s(k) WHERE id = k", P),
        ("DELETE FROM victim USING (VALUES (1)) s(k) WHERE public.victim.id = 1", P),
        ("DELETE FROM victim USING orders o WHERE victim.id = o.account_id", P),
        ("DELETE FROM victim v USING orders o WHERE v.id = o.account_id AND o.total > 0", P),
        ("UPDATE victim SET v = 'x' FROM (VALUES (1, 'a')) s(k, w) WHERE id = k", P),
        ("MERGE INTO victim t USING src s ON t.id = s.k WHEN MATCHED THEN DELETE", P),
        # DECISION (targets.py): an unqualified name next to a source whose columns are not
        # known may be that source's column: not counted as the target's. Qualify it.
        ("DELETE FROM victim USING orders WHERE total > 0", T),
        ("DELETE FROM victim USING orders WHERE id = account_id", T),
        ("DELETE FROM victim USING orders WHERE victim.id = account_id", P),
        ("DELETE FROM victim WHERE id = 1", P),
        ("DELETE FROM victim WHERE victim IS NOT NULL", T),  # every row without a NULL
        # uncorrelated subqueries restrict nothing
        ("UPDATE victim SET v = 'x' WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid > 0)", T),
        ("DELETE FROM victim WHERE EXISTS (SELECT 1 FROM orders WHERE id > 0)", T),
        ("DELETE FROM victim WHERE EXISTS (SELECT 1 FROM victim WHERE victim.id = 1)", T),
        ("DELETE FROM victim WHERE EXISTS (SELECT 1 AS id ORDER BY id)", T),
        ("DELETE FROM victim WHERE EXISTS (SELECT * FROM (VALUES (1)) s(a))", T),
        ("DELETE FROM victim WHERE (SELECT max(id) FROM orders) > 0", T),
        ("DELETE FROM victim WHERE EXISTS (SELECT 1 FROM orders UNION SELECT 2)", T),
        ("DELETE FROM victim WHERE 1 IN (SELECT account_id FROM orders)", T),
        (
            "DELETE FROM victim WHERE EXISTS "
            "(SELECT 1 FROM orders o WHERE o.account_id = victim.id)",
            P,
        ),
        ("DELETE FROM victim v WHERE EXISTS (SELECT 1 FROM orders o WHERE o.account_id = v.id)", P),
        ("DELETE FROM victim WHERE EXISTS (SELECT 1 FROM (VALUES (1)) s(k) WHERE k = id)", P),
        (
            "DELETE FROM victim WHERE EXISTS "
            "(SELECT 1 FROM orders o, LATERAL (SELECT victim.id) x)",
            P,
        ),
        ("DELETE FROM victim WHERE id IN (SELECT account_id FROM orders)", P),
        # $n parameters are constants for the statement
        ("DELETE FROM victim WHERE $1 IS NOT NULL", T),
        ("DELETE FROM victim WHERE $1 = $2", T),
        ("DELETE FROM victim WHERE id = $1", P),
    ],
)
def test_condition_must_depend_on_the_target_row(sql: str, expected: WhereClause) -> None:
    assert where(sql) == expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("DO $$DECLARE k int := 1; BEGIN DELETE FROM victim WHERE k = 1; END$$", [T]),
        ("DO $$DECLARE k int := 1; BEGIN DELETE FROM victim WHERE id = k; END$$", [P]),
        ("DO $$DECLARE k int := 1; BEGIN DELETE FROM victim WHERE victim.id = k; END$$", [P]),
        ("DO $$BEGIN FOR i IN 1..3 LOOP DELETE FROM victim WHERE i > 0; END LOOP; END$$", [T]),
        ("DO $$BEGIN FOR i IN 1..3 LOOP DELETE FROM victim WHERE id = i; END LOOP; END$$", [P]),
        (
            "DO $$DECLARE r record; BEGIN FOR r IN SELECT 1 AS a LOOP "
            "UPDATE victim SET v = 'x' WHERE r.a = 1; END LOOP; END$$",
            [T],
        ),
        ("DO $$<<b>> DECLARE k int; BEGIN DELETE FROM victim WHERE b.k IS NULL; END$$", [T]),
        ("DO $$BEGIN DELETE FROM victim WHERE found; END$$", [T]),
        (
            "CREATE FUNCTION wipe(k int) RETURNS void LANGUAGE sql "
            "AS $$DELETE FROM victim WHERE k IS NOT NULL$$",
            [T],
        ),
        (
            "CREATE FUNCTION wipe(k int) RETURNS void LANGUAGE sql "
            "AS $$DELETE FROM victim WHERE id = k$$",
            [P],
        ),
        (
            "CREATE FUNCTION wipe(k int) RETURNS void LANGUAGE sql "
            "AS $$DELETE FROM victim WHERE wipe.k = 1$$",
            [T],
        ),
        (
            "CREATE FUNCTION wipe(k int) RETURNS void LANGUAGE sql "
            "BEGIN ATOMIC DELETE FROM victim WHERE k > 0; END",
            [T],
        ),
        (
            "CREATE FUNCTION wipe(int) RETURNS void LANGUAGE sql "
            "AS $$DELETE FROM victim WHERE $1 IS NOT NULL$$",
            [T],
        ),
        (
            "CREATE FUNCTION wipe(int) RETURNS void LANGUAGE sql "
            "AS $$DELETE FROM victim WHERE id = $1$$",
            [P],
        ),
        # an SQL function's OUT / TABLE columns are not parameters in its body
        (
            "CREATE FUNCTION purge(p int) RETURNS TABLE(id int) LANGUAGE sql "
            "AS $$DELETE FROM victim WHERE id = p RETURNING id$$",
            [P],
        ),
        (
            "CREATE FUNCTION wipe(k int) RETURNS void LANGUAGE plpgsql "
            "AS $$BEGIN DELETE FROM victim WHERE k = 1; END$$",
            [T],
        ),
        (
            "CREATE FUNCTION wipe(k int) RETURNS void LANGUAGE plpgsql "
            "AS $$BEGIN DELETE FROM victim WHERE id = k; END$$",
            [P],
        ),
        (
            "CREATE FUNCTION wipe(k int, OUT n int) LANGUAGE plpgsql "
            "AS $$BEGIN UPDATE victim SET v = 'x' WHERE n IS NULL; END$$",
            [T],
        ),
        # a trigger function's NEW / OLD, a rule action's NEW / OLD are not the target row
        (
            "CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql "
            "AS $$BEGIN DELETE FROM victim WHERE new.id = 1; RETURN NEW; END$$",
            [T],
        ),
        (
            "CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql "
            "AS $$BEGIN DELETE FROM victim WHERE id = new.id; RETURN NEW; END$$",
            [P],
        ),
        ("CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM victim WHERE new.id = 1", [T]),
        ("CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM victim WHERE id = new.id", [P]),
        # a body's variables are its own: not those of the statement around it
        ("DO $$DECLARE id int; BEGIN NULL; END$$; DELETE FROM victim WHERE id = 1", [P]),
    ],
)
def test_variables_and_parameters_are_not_the_target_row(
    sql: str, expected: list[WhereClause]
) -> None:
    assert wheres(sql) == expected


# --- bounded subqueries: job queues and batches are real restrictions ---------------------


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ("id IN (SELECT id FROM jobs ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED)", P),
        ("ctid IN (SELECT ctid FROM jobs LIMIT 100)", P),
        ("id IN (SELECT DISTINCT ON (queue) id FROM jobs ORDER BY queue, id)", P),
        ("id IN (SELECT id FROM jobs FETCH FIRST 5 ROWS ONLY)", P),
        ("id IN (SELECT id FROM jobs OFFSET 5)", P),
        ("id IN (SELECT id FROM jobs LIMIT $1)", P),
        ("id IN (SELECT id FROM jobs FOR UPDATE)", P),
        ("id IN (SELECT id FROM jobs WHERE done)", P),
        ("id IN (SELECT id FROM jobs WHERE jobs.done = $1)", P),
        ("id IN (SELECT min(id) FROM jobs GROUP BY queue)", P),
        ("id IN (SELECT id FROM jobs GROUP BY id HAVING count(*) > 1)", P),
        # ONLY, or a schema the unqualified target may resolve to: the same table, read
        # conservatively
        ("id IN (SELECT id FROM ONLY jobs)", T),
        ("id IN (SELECT id FROM other.jobs)", T),
        ("id IN (SELECT queue FROM jobs)", P),
        ("id IN (WITH x AS (SELECT 1) SELECT id FROM jobs)", P),
        # unbounded: the whole table
        ("id IN (SELECT id FROM jobs)", T),
        ("jobs.id IN (SELECT j.id FROM jobs j)", T),
        ("ctid IN (SELECT ctid FROM jobs)", T),
        ("id = ANY (SELECT id FROM jobs)", T),
        ("id IN (SELECT DISTINCT id FROM jobs)", T),
        ("id IN (SELECT id FROM jobs ORDER BY id)", T),
        ("id IN (SELECT id FROM jobs LIMIT ALL)", T),
        ("id IN (SELECT id FROM jobs LIMIT NULL OFFSET 0)", T),
        ("id IN (SELECT id FROM jobs WHERE true)", T),
        ("id IN (SELECT id FROM jobs WHERE 0.1 + 0.2 = 0.3)", T),
        ("id IN (SELECT id FROM jobs j2 WHERE j2.id = j2.id)", T),
        ("id IN (SELECT id FROM jobs WHERE EXISTS (SELECT 1 FROM pg_class))", T),
    ],
)
def test_subquery_bounds(cond: str, expected: WhereClause) -> None:
    assert where(f"DELETE FROM jobs WHERE {cond}") == expected
    assert where(f"UPDATE jobs SET done = true WHERE {cond}") == expected
