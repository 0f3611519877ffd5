"""Messages the server sends at any time: NotificationResponse (LISTEN/NOTIFY),
NoticeResponse (RAISE NOTICE) and ParameterStatus (SET application_name, TimeZone)."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import pytest

from pgsentry.devtools import PgCluster, ProxyProcess

pytestmark = pytest.mark.timeout(60)


def test_listen_notify_psycopg(proxy: ProxyProcess) -> None:
    big = "x" * 7000
    with (
        psycopg.connect(proxy.dsn(), autocommit=True) as listener,
        psycopg.connect(proxy.dsn(), autocommit=True) as notifier,
    ):
        listener.execute("listen pgsentry_ch")
        notifier.execute("notify pgsentry_ch, 'hello'")
        notifier.execute("select pg_notify('pgsentry_ch', %s)", [big])
        got = [(n.channel, n.payload) for n in listener.notifies(timeout=15, stop_after=2)]
    assert got == [("pgsentry_ch", "hello"), ("pgsentry_ch", big)]


def test_notify_from_direct_session_reaches_proxied_listener(
    pg: PgCluster, proxy: ProxyProcess
) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as listener:
        listener.execute("listen from_direct")
        pg.psql("notify from_direct, 'across'")
        got = [n.payload for n in listener.notifies(timeout=15, stop_after=1)]
    assert got == ["across"]


async def test_listen_notify_asyncpg_while_idle(proxy: ProxyProcess) -> None:
    listener = await asyncpg.connect(proxy.dsn(), timeout=15)
    notifier = await asyncpg.connect(proxy.dsn(), timeout=15)
    received: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(
            "idle_ch", lambda _c, _pid, _ch, payload: received.put_nowait(payload)
        )
        for i in range(3):
            await notifier.execute(f"notify idle_ch, 'n{i}'")
        got = [await asyncio.wait_for(received.get(), 15) for _ in range(3)]
        assert got == ["n0", "n1", "n2"]
    finally:
        await listener.close()
        await notifier.close()


def test_notice_response_psycopg(proxy: ProxyProcess) -> None:
    notices: list[tuple[str | None, str | None]] = []
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append((d.severity, d.message_primary)))
        conn.execute("do $$ begin raise notice 'hello %', 42; raise warning 'careful'; end $$")
        conn.execute("select 1")
    assert notices == [("NOTICE", "hello 42"), ("WARNING", "careful")]


async def test_notice_response_asyncpg(proxy: ProxyProcess) -> None:
    conn = await asyncpg.connect(proxy.dsn(), timeout=15)
    messages: list[str] = []
    try:
        conn.add_log_listener(lambda _c, msg: messages.append(msg.message))
        await conn.execute("do $$ begin raise notice 'from asyncpg'; end $$")
        await conn.fetchval("select 1")
    finally:
        await conn.close()
    assert messages == ["from asyncpg"]


def test_parameter_status_changes(pg: PgCluster, proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(application_name="initial-app"), autocommit=True) as conn:
        assert conn.info.parameter_status("application_name") == "initial-app"
        assert conn.info.parameter_status("server_version") is not None
        conn.execute("set application_name = 'changed-by-set'")
        assert conn.info.parameter_status("application_name") == "changed-by-set"
        conn.execute("set timezone = 'Asia/Tokyo'")
        assert conn.info.parameter_status("TimeZone") == "Asia/Tokyo"
        seen = pg.psql(
            "select application_name from pg_stat_activity where application_name = "
            "'changed-by-set'"
        )
        assert seen.strip() == "changed-by-set"


async def test_parameter_status_asyncpg(proxy: ProxyProcess) -> None:
    conn = await asyncpg.connect(proxy.dsn(), timeout=15)
    try:
        await conn.execute("set application_name = 'asyncpg-app'")
        assert conn.get_settings().application_name == "asyncpg-app"
    finally:
        await conn.close()
