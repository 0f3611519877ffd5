"""The proxy's audit log (JSON Lines) for enforced statements: every statement's record
carries the decision, the rule and the facts; a denied one also the SQLSTATE the client
got. Read from the file the real proxy writes, after real clients ran the statements.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import psycopg
import pytest
from integration import rawpg

from pgsentry.devtools import PgCluster, ProxyProcess

from .support import FIXTURE_DB, direct_fetch

pytestmark = pytest.mark.timeout(60)

# (SQL, psycopg prepare) -> the audit fields expected for it
CASES: list[tuple[str, bool, dict[str, Any]]] = [
    (
        "DROP TABLE accounts",
        False,
        {"protocol": "simple", "decision": "deny", "rule": "no-drop-table", "sqlstate": "42501",
         "facts": [{"kind": "drop_table", "relations": ["accounts"]}]},
    ),
    (
        "SELECT 1; DELETE FROM app.users WHERE 1 = 1",
        False,
        {"protocol": "simple", "decision": "deny", "rule": "no-delete-without-where",
         "facts": [{"kind": "select"},
                   {"kind": "delete", "relations": ["app.users"], "where": "tautological"}]},
    ),
    (
        "DO $$ BEGIN EXECUTE 'TRUNCATE ' || 'orders'; END $$",
        False,
        {"protocol": "simple", "decision": "deny", "rule": "no-dynamic-sql"},
    ),
    (
        "TRUNCATE orders",
        True,
        {"protocol": "extended", "phase": "parse", "decision": "deny", "rule": "no-truncate",
         "facts": [{"kind": "truncate", "relations": ["orders"]}]},
    ),
    (
        "SELECT count(*) FROM accounts WHERE id < 5",
        False,
        {"protocol": "simple", "decision": "allow", "sqlstate": None, "command_tag": "SELECT 1",
         "facts": [{"kind": "select", "relations": ["accounts"]}]},
    ),
    (
        "UPDATE accounts SET balance = balance WHERE id = 1",
        True,
        {"protocol": "extended", "decision": "allow", "command_tag": "UPDATE 1", "rows": 1,
         "facts": [{"kind": "update", "relations": ["accounts"], "where": "present"}]},
    ),
]  # fmt: skip


def _statement_records(proxy: ProxyProcess, text: str) -> list[dict[str, Any]]:
    return [r for r in proxy.audit_records() if r.get("event") == "statement" and r["text"] == text]


def test_audit_records_carry_decision_rule_and_facts(shipped_proxy: ProxyProcess) -> None:
    with psycopg.connect(shipped_proxy.dsn(dbname=FIXTURE_DB), autocommit=True) as conn:
        for sql, prepare, expected in CASES:
            try:
                conn.execute(sql, prepare=prepare)
                assert expected["decision"] == "allow", sql
            except psycopg.errors.InsufficientPrivilege:
                assert expected["decision"] == "deny", sql
    for sql, _, expected in CASES:
        records = shipped_proxy.wait_until(
            partial(_statement_records, shipped_proxy, sql), timeout=10, what=sql
        )
        assert len(records) == 1, records
        record = records[0]
        for key, value in expected.items():
            assert record.get(key) == value, (sql, key, record)
        if expected["decision"] == "deny":
            assert record.get("facts"), record
        if sql.startswith("DO"):
            assert {"kind": "do_block", "dynamic_sql": True} in record["facts"], record


def test_function_call_audit_record(shipped_proxy: ProxyProcess, fixture_db: PgCluster) -> None:
    oid = int(direct_fetch(fixture_db, "SELECT 'int4pl'::regproc::oid")[0][0])
    with rawpg.RawConn(shipped_proxy.host, shipped_proxy.port) as conn:
        conn.login(database=FIXTURE_DB)
        conn.send(rawpg.function_call(oid, [b"\x00\x00\x00\x01", b"\x00\x00\x00\x02"]))
        assert conn.read_until([b"Z"])[0].sqlstate == "42501"

    def record() -> dict[str, Any] | None:
        for r in shipped_proxy.audit_records():
            if r.get("event") == "statement" and r.get("protocol") == "function_call":
                return r
        return None

    found: dict[str, Any] = shipped_proxy.wait_until(record, timeout=10, what="function_call")
    assert found["decision"] == "deny"
    assert found["rule"] == "function_call"
    assert found["facts"] == [{"kind": "function_call", "oid": oid}]
