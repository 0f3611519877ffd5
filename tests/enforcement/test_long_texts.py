"""Long texts are judged like short ones, off the event loop, with the shipped policies.

A text over JUDGE_ON_LOOP_MAX is judged on a worker thread, one over
ANALYSE_IN_PROCESS_ABOVE analysed in a process of its own: the verdict is the same, the
client messages behind it wait for it, and other sessions go on meanwhile. Effects are read
directly on the cluster.
"""

from __future__ import annotations

import select
from collections.abc import Iterator

import pytest
from integration import rawpg

from pgsentry.devtools import PgCluster, ProxyProcess
from pgsentry.proxy.connection import ANALYSE_IN_PROCESS_ABOVE
from pgsentry.session.statements import JUDGE_ON_LOOP_MAX

from .support import FIXTURE_DB, direct_fetch, reset_schema

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _fresh_schema(fixture_db: PgCluster) -> Iterator[None]:
    yield
    reset_schema(fixture_db)


def _values(rows: int) -> str:
    return "SELECT count(*) FROM (VALUES " + ",".join(f"({i})" for i in range(rows)) + ") v(a)"


def _accounts(pg: PgCluster) -> int:
    return int(direct_fetch(pg, "SELECT count(*) FROM accounts")[0][0])


@pytest.mark.parametrize("size", [JUDGE_ON_LOOP_MAX * 4, ANALYSE_IN_PROCESS_ABOVE * 2])
def test_a_long_text_hiding_a_drop_is_denied(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster, size: int
) -> None:
    before = _accounts(fixture_db)
    harmless = _values(size // 6)
    assert len(harmless) > size
    with rawpg.RawConn(shipped_proxy.host, shipped_proxy.port, timeout=100) as conn:
        conn.login(database=FIXTURE_DB)
        conn.send(
            rawpg.query(harmless + "; DELETE FROM accounts")
            + rawpg.query("SELECT 'after'")  # waits behind the judgement, then runs
        )
        refused = conn.read_until([b"Z"])
        after = conn.read_until([b"Z"])
    assert refused[0].kind == b"E" and refused[0].sqlstate == "42501"
    assert "no-delete-without-where" in refused[0].fields["M"]
    assert [m.kind for m in after] == [b"T", b"D", b"C", b"Z"]
    assert _accounts(fixture_db) == before


def test_a_long_harmless_text_runs_and_others_are_served_meanwhile(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    rows = ANALYSE_IN_PROCESS_ABOVE // 4
    with (
        rawpg.RawConn(shipped_proxy.host, shipped_proxy.port, timeout=100) as big,
        rawpg.RawConn(shipped_proxy.host, shipped_proxy.port, timeout=30) as other,
    ):
        big.login(database=FIXTURE_DB)
        other.login(database=FIXTURE_DB)
        big.send(rawpg.query(_values(rows)))
        for _ in range(3):  # answered while the long text is still being judged
            other.send(rawpg.query("SELECT 1"))
            assert [m.kind for m in other.read_until([b"Z"])] == [b"T", b"D", b"C", b"Z"]
        # ... before the long text reached the server: it is still being judged
        running = direct_fetch(
            fixture_db,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s",
            ["SELECT count(*) FROM (VALUES%"],
        )
        assert running == [(0,)]
        assert select.select([big.sock], [], [], 0)[0] == []
        answer = big.read_until([b"Z"])
    rows_back = [m for m in answer if m.kind == b"D"]
    assert len(rows_back) == 1 and rows_back[0].payload.endswith(str(rows).encode())


def test_a_long_extended_parse_is_judged_apart_too(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    before = _accounts(fixture_db)
    long_delete = "DELETE FROM accounts WHERE true" + " AND true" * (JUDGE_ON_LOOP_MAX // 8)
    with rawpg.RawConn(shipped_proxy.host, shipped_proxy.port, timeout=60) as conn:
        conn.login(database=FIXTURE_DB)
        conn.send(
            rawpg.parse("", long_delete)
            + rawpg.bind("", "")
            + rawpg.execute("")
            + rawpg.sync()
            + rawpg.query("SELECT 'after'")
        )
        refused = conn.read_until([b"Z"])
        after = conn.read_until([b"Z"])
    assert any(m.kind == b"E" and m.sqlstate == "42501" for m in refused)
    assert [m.kind for m in after] == [b"T", b"D", b"C", b"Z"]
    assert _accounts(fixture_db) == before
