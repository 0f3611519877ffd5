"""Every entry of tests/corpus/benign.yaml, live through the proxy on the SHIPPED policies:
ORM queries, writes with real WHERE clauses, additive DDL, psql's backslash-command
queries. Each must pass untouched: no error at all (the fixture schema is made so that
every entry succeeds), and the session answers normally afterwards.

Entries that write are allowed to change the database; the schema is put back directly
on the cluster after any entry that changed it.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgsentry.devtools import PgCluster, ProxyProcess

from .support import (
    ASYNCPG,
    EXTENDED,
    FIXTURE_DB,
    SIMPLE,
    Outcome,
    Snapshot,
    load_corpus,
    protocols_for,
    reset_schema,
    run,
    snapshot,
)

pytestmark = pytest.mark.timeout(120)

BENIGN = load_corpus("benign")


def _protocols(entry: dict[str, Any]) -> list[str]:
    if "copy_to" in entry["expect_kinds"]:
        return [SIMPLE]  # COPY OUT needs the client's copy API: psycopg's Cursor.copy()
    return protocols_for(entry)


CASES = [
    pytest.param(entry, protocol, id=f"{entry['id']}-{protocol}")
    for entry in BENIGN
    for protocol in _protocols(entry)
]


@pytest.fixture(scope="module")
def baseline(fixture_db: PgCluster) -> Snapshot:
    return snapshot(fixture_db)


def _copy_out(proxy: ProxyProcess, sql: str) -> Outcome:
    with psycopg.connect(proxy.dsn(dbname=FIXTURE_DB), autocommit=True) as conn:
        try:
            with conn.cursor() as cur, cur.copy(sql) as copy:
                data = b"".join(bytes(chunk) for chunk in copy)
            outcome = Outcome(None if data else "no-data")
        except psycopg.Error as exc:
            return Outcome(exc.sqlstate, exc.diag.message_primary or "")
        outcome.session_after = conn.execute("SELECT 1").fetchone()
    return outcome


def test_corpus_is_large_enough() -> None:
    assert len(BENIGN) >= 80
    assert {SIMPLE, EXTENDED, ASYNCPG} <= {p for e in BENIGN for p in _protocols(e)}


@pytest.mark.parametrize(("entry", "protocol"), CASES)
def test_benign_statement_passes(
    entry: dict[str, Any],
    protocol: str,
    shipped_proxy: ProxyProcess,
    fixture_db: PgCluster,
    baseline: Snapshot,
) -> None:
    if "copy_to" in entry["expect_kinds"]:
        outcome = _copy_out(shipped_proxy, entry["sql"])
    else:
        outcome = run(shipped_proxy, entry["sql"], protocol)
    if snapshot(fixture_db) != baseline:
        reset_schema(fixture_db)
    assert outcome.sqlstate is None, f"refused or failed: {outcome}"
    assert outcome.usable_after
