"""Simple and extended query protocol through the proxy: multi-statement simple queries,
named/unnamed statements and portals, binary formats, psycopg pipeline mode, asyncpg prepared
statements and cursors; raw extended batches must get byte-identical answers direct vs proxied."""

from __future__ import annotations

import datetime
import decimal
import struct
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import psycopg
import pytest

from pgsentry import native
from pgsentry.devtools import PgCluster, ProxyProcess
from pgsentry.devtools.proxyproc import wait_until
from pgsentry.devtools.testkit import ProxyFactory

from . import rawpg
from .rawpg import Msg, RawConn

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module", params=["c-extensions", "pure-python"])
def proxy(request: pytest.FixtureRequest, module_proxy_factory: ProxyFactory) -> ProxyProcess:
    """Every test here runs against both builds: the C extensions and their Python twins
    (what an install without a C compiler runs)."""
    pure = request.param == "pure-python"
    started = module_proxy_factory(env={native.DISABLE_VARIABLE: "1"} if pure else {})
    expected = "pure Python (PGSENTRY_NO_EXTENSIONS is set)" if pure else "C extensions in use: p"
    wait_until(lambda: expected in started.stderr, timeout=10, what="the extensions log line")
    return started


def test_simple_query_multi_statement(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)
        cur.execute("select 1 as a; select 'x' as b, 2 as c; create temp table t(i int)")
        assert cur.fetchall() == [(1,)]
        assert cur.nextset()
        assert cur.fetchall() == [("x", 2)]
        assert cur.nextset()
        assert cur.statusmessage == "CREATE TABLE"


def test_transaction_status_and_error_recovery(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn()) as conn:
        conn.execute("select 1")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("select 1/0")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("select 2")
        conn.rollback()
        assert conn.execute("select 3").fetchone() == (3,)


def test_extended_prepared_named_statements(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True, prepare_threshold=0) as conn:
        for i in range(5):
            assert conn.execute("select %s::int * 2", [i]).fetchone() == (i * 2,)
        names = conn.execute("select name from pg_prepared_statements").fetchall()
        assert names, "psycopg should have prepared a named statement"
        conn.execute("deallocate all", prepare=False)
        count = conn.execute("select count(*) from pg_prepared_statements", prepare=False)
        assert count.fetchone() == (0,)


VALUES_SQL = (
    "select 1::int4, 2::int8, 1.5::numeric, 'text'::text, '\\x00ff'::bytea, true, "
    "'2024-01-02 03:04:05+00'::timestamptz, array[1,2,3]::int4[], '{\"a\": 1}'::jsonb, "
    "'9f7c2c52-37a5-4d53-8e6e-3d1e7f0b6f11'::uuid, null::text"
)


def test_binary_and_text_results_agree(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        text_row = conn.cursor().execute(VALUES_SQL).fetchone()
        binary_row = conn.cursor(binary=True).execute(VALUES_SQL).fetchone()
    assert text_row == binary_row
    assert text_row is not None
    assert text_row[4] == b"\x00\xff"
    assert text_row[6] == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def test_pipeline_mode(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("create temp table pipe(i int primary key, s text)")
        with conn.pipeline():
            conn.cursor().executemany(
                "insert into pipe values (%s, %s)", [(i, f"row{i}") for i in range(500)]
            )
            cursors = [conn.execute("select count(*) from pipe where i < %s", [n]) for n in (1, 10)]
        assert [c.fetchone() for c in cursors] == [(1,), (10,)]
        # An error inside a pipeline aborts the rest of that batch, exactly as PostgreSQL does.
        with pytest.raises(psycopg.errors.UniqueViolation), conn.pipeline():
            conn.execute("insert into pipe values (1000, 'a')")
            conn.execute("insert into pipe values (1, 'dup')")
            conn.execute("insert into pipe values (1001, 'b')")
        assert conn.execute("select count(*) from pipe").fetchone() == (500,)
        assert conn.execute("select 'after'").fetchone() == ("after",)


async def test_asyncpg_prepared_statements_and_binary(proxy: ProxyProcess) -> None:
    conn = await asyncpg.connect(proxy.dsn(), timeout=15)
    try:
        stmt = await conn.prepare("select $1::int + $2::int8, $3::bytea, $4::numeric, $5::uuid")
        assert [t.name for t in stmt.get_parameters()] == [
            "int4",
            "int8",
            "bytea",
            "numeric",
            "uuid",
        ]
        u = uuid.uuid4()
        for i in range(20):
            row = await stmt.fetchrow(i, 10**12, bytes([i]) * 3, decimal.Decimal("1.25"), u)
            assert tuple(row) == (i + 10**12, bytes([i]) * 3, decimal.Decimal("1.25"), u)
        await conn.execute("create temp table ap(i int, ts timestamptz, arr text[], j jsonb)")
        now = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
        await conn.executemany(
            "insert into ap values ($1, $2, $3, $4)",
            [(i, now, [f"a{i}", None], f'{{"k": {i}}}') for i in range(100)],
        )
        rows = await conn.fetch("select * from ap order by i")
        assert len(rows) == 100
        assert tuple(rows[7]) == (7, now, ["a7", None], '{"k": 7}')
        with pytest.raises(asyncpg.UndefinedTableError):
            await conn.fetch("select * from missing_table")
        assert await stmt.fetchval(1, 1, b"", 0, u) == 2
    finally:
        await conn.close()


async def test_asyncpg_cursor_uses_named_portal_in_chunks(proxy: ProxyProcess) -> None:
    conn = await asyncpg.connect(proxy.dsn(), timeout=15)
    try:
        async with conn.transaction():
            seen = [r[0] async for r in conn.cursor("select generate_series(1, 1000)", prefetch=64)]
            assert seen == list(range(1, 1001))
            cur = await conn.cursor("select generate_series(1, 100)")
            assert [r[0] for r in await cur.fetch(30)] == list(range(1, 31))
            await cur.forward(10)
            assert (await cur.fetchrow())[0] == 41
    finally:
        await conn.close()


def _int(value: int) -> bytes:
    return struct.pack("!i", value)


# Raw extended-protocol batches: (name, bytes). Sent identically to PostgreSQL and to the proxy.
BATCHES: list[tuple[str, bytes]] = [
    (
        "named-statement-named-portal-suspended",
        rawpg.parse("s1", "select generate_series(1, $1::int) as n", [23])
        + rawpg.describe(b"S", "s1")
        + rawpg.bind("p1", "s1", [b"5"])
        + rawpg.execute("p1", 2)
        + rawpg.execute("p1", 2)
        + rawpg.execute("p1", 0)
        + rawpg.close(b"P", "p1")
        + rawpg.close(b"S", "s1")
        + rawpg.sync(),
    ),
    (
        "unnamed-binary-params-and-results",
        rawpg.parse("", "select $1::int4 + 1, $2::bytea", [23, 17])
        + rawpg.bind("", "", [_int(41), b"\x00\x01\x02"], [1, 1], [1])
        + rawpg.describe(b"P", "")
        + rawpg.execute("")
        + rawpg.sync(),
    ),
    (
        "error-skips-to-sync-then-next-batch",
        rawpg.parse("", "select 1/0")
        + rawpg.bind("", "")
        + rawpg.execute("")
        + rawpg.parse("never", "select 1")
        + rawpg.sync()
        + rawpg.parse("", "select 'next batch'")
        + rawpg.bind("", "")
        + rawpg.execute("")
        + rawpg.sync(),
    ),
    (
        "pipelined-syncs-and-flush",
        b"".join(
            rawpg.parse("", f"select {i}") + rawpg.bind("", "") + rawpg.execute("") + rawpg.sync()
            for i in range(20)
        ),
    ),
    (
        "transaction-across-batches",
        rawpg.query("begin")
        + rawpg.parse("ins", "select $1::text")
        + rawpg.bind("", "ins", [None])
        + rawpg.execute("")
        + rawpg.sync()
        + rawpg.query("commit"),
    ),
]


def _count_ready(batch: bytes) -> int:
    """How many ReadyForQuery the batch earns: one per Sync and per simple Query."""
    count, pos = 0, 0
    while pos < len(batch):
        kind = batch[pos : pos + 1]
        (length,) = struct.unpack("!i", batch[pos + 1 : pos + 5])
        count += kind in (b"S", b"Q")
        pos += 1 + length
    return count


def _run_batch(host: str, port: int, batch: bytes) -> list[Msg]:
    n_ready = _count_ready(batch)
    with RawConn(host, port) as conn:
        conn.login()
        conn.send(batch)
        out: list[Msg] = []
        for _ in range(n_ready):
            out += conn.read_until([b"Z"])
        conn.send(rawpg.terminate())
        return out


@pytest.mark.parametrize(("name", "batch"), BATCHES, ids=[b[0] for b in BATCHES])
def test_raw_extended_batches_identical_direct_and_proxied(
    pg: PgCluster, proxy: ProxyProcess, name: str, batch: bytes
) -> None:
    direct = _run_batch(pg.host, pg.port, batch)
    proxied = _run_batch(proxy.host, proxy.port, batch)
    assert proxied == direct
    assert direct[-1].kind == b"Z"


# Executions of an already prepared statement arrive as one chunk that starts with Bind and
# ends with Sync (pgbench -M prepared, drivers' cached statements): the proxy bookkeeps such a
# chunk in place and forwards it whole. Each step is sent as one chunk.
STEPS: list[tuple[str, list[bytes]]] = [
    (
        "bind-execute-sync-chunks",
        [
            rawpg.parse("s1", "select $1::int4 * 2") + rawpg.sync(),
            rawpg.bind("", "s1", [b"21"]) + rawpg.execute("") + rawpg.sync(),
            rawpg.bind("", "s1", [b"4"])
            + rawpg.describe(b"P", "")
            + rawpg.execute("")
            + rawpg.bind("p2", "s1", [b"5"])
            + rawpg.execute("p2", 1)
            + rawpg.sync(),
        ],
    ),
    (
        "bind-chunk-errors",
        [
            rawpg.bind("", "missing") + rawpg.execute("") + rawpg.sync(),
            rawpg.parse("s2", "select 1/$1::int4") + rawpg.sync(),
            rawpg.bind("", "s2", [b"0"]) + rawpg.execute("") + rawpg.sync(),
            rawpg.bind("", "s2", [b"1"]) + rawpg.execute("") + rawpg.sync(),
        ],
    ),
    (
        "bind-execute-then-sync-alone",
        [
            rawpg.parse("s3", "select 3") + rawpg.sync(),
            rawpg.bind("", "s3") + rawpg.execute(""),
            rawpg.sync(),
        ],
    ),
]


def _run_steps(host: str, port: int, steps: list[bytes]) -> list[Msg]:
    with RawConn(host, port) as conn:
        conn.login()
        out: list[Msg] = []
        for step in steps:
            conn.send(step)
            for _ in range(_count_ready(step)):
                out += conn.read_until([b"Z"])
        conn.send(rawpg.terminate())
        return out


@pytest.mark.parametrize(("name", "steps"), STEPS, ids=[s[0] for s in STEPS])
def test_execute_chunks_identical_direct_and_proxied(
    pg: PgCluster, proxy: ProxyProcess, name: str, steps: list[bytes]
) -> None:
    direct = _run_steps(pg.host, pg.port, steps)
    proxied = _run_steps(proxy.host, proxy.port, steps)
    assert proxied == direct
    assert direct[-1].kind == b"Z"


def test_execute_chunks_are_audited(proxy: ProxyProcess) -> None:
    """Each Execute in a Bind..Sync chunk gets its statement record, with its names."""

    started = time.time()  # the proxy is shared: earlier tests ran the same steps
    _run_steps(proxy.host, proxy.port, STEPS[0][1])

    def records() -> list[dict[str, Any]] | None:
        found = [
            r
            for r in proxy.audit_records()
            if r["event"] == "statement"
            and r.get("text") == "select $1::int4 * 2"
            and r["started_at"] >= started
        ]
        return found if len(found) >= 3 else None

    found = wait_until(records, what="three statement records")
    assert [(r["statement_name"], r["portal"], r["command_tag"]) for r in found[-3:]] == [
        ("s1", "", "SELECT 1"),
        ("s1", "", "SELECT 1"),
        ("s1", "p2", None),  # max_rows 1: PortalSuspended, no CommandComplete
    ]
    assert all(r["protocol"] == "extended" and r["sqlstate"] is None for r in found[-3:])


def _both(pg: PgCluster, proxy: ProxyProcess, fn: Callable[[str], Any]) -> None:
    assert fn(proxy.dsn()) == fn(pg.dsn(sslmode="disable"))


def test_single_row_mode_stream_same_as_direct(pg: PgCluster, proxy: ProxyProcess) -> None:
    def stream(dsn: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            return list(
                conn.cursor().stream("select i, md5(i::text) from generate_series(1, 3000) i")
            )

    _both(pg, proxy, stream)


def test_extended_messages_reach_the_server_before_sync(proxy: ProxyProcess) -> None:
    """As directly: the server runs an Execute when it arrives, so its error comes back
    before the client's Sync (asyncpg's executemany stops streaming on it)."""
    with RawConn(proxy.host, proxy.port, timeout=10) as conn:
        conn.login()
        conn.send(rawpg.parse("", "SELECT 1/0") + rawpg.bind("", "") + rawpg.execute(""))
        msgs = conn.read_until([b"E"])  # no Sync sent yet
        assert msgs[-1].sqlstate == "22012"
        conn.send(rawpg.sync())
        assert [m.kind for m in conn.read_until([b"Z"])] == [b"Z"]
