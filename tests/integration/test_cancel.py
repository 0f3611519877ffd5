"""CancelRequest routing: a client's cancel reaches the backend running its query (psycopg
cancel, asyncpg timeout), and a forged or foreign key never cancels another session's query."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import psycopg
import pytest

from pgsentry.devtools import PgCluster, ProxyProcess
from pgsentry.devtools.proxyproc import wait_until

from . import rawpg
from .helpers import Background, active_backend_pid
from .rawpg import RawConn

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("method", ["cancel", "cancel_safe"])
def test_psycopg_cancel_pg_sleep(pg: PgCluster, proxy: ProxyProcess, method: str) -> None:
    tag = f"cancel_me_{method}"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        job = Background(lambda: conn.execute(f"select pg_sleep(30) as {tag}").fetchall())
        active_backend_pid(pg, tag)
        getattr(conn, method)()
        err = job.error(timeout=20)
        assert isinstance(err, psycopg.errors.QueryCanceled), repr(err)
        assert err.sqlstate == "57014"
        assert conn.execute("select 'still usable'").fetchone() == ("still usable",)


async def test_asyncpg_timeout_cancels_query(pg: PgCluster, proxy: ProxyProcess) -> None:
    conn = await asyncpg.connect(proxy.dsn(), timeout=15)
    try:
        with pytest.raises(asyncio.TimeoutError):
            await conn.fetchval("select pg_sleep(30) as asyncpg_timeout_me", timeout=1)
        assert await conn.fetchval("select 7") == 7
    finally:
        await conn.close()
    # The upstream query really stopped (not merely abandoned by the client).
    wait_until(
        lambda: "asyncpg_timeout_me" not in pg.psql("select query from pg_stat_activity"),
        timeout=15,
        what="cancelled query gone from pg_stat_activity",
    )


def _send_cancel(proxy: ProxyProcess, pid: int, secret: int) -> None:
    """Send one CancelRequest and wait until the proxy closes that connection."""
    with RawConn(proxy.host, proxy.port) as conn:
        conn.send(rawpg.cancel_request(pid, secret))
        assert conn.read_to_close() == []


def test_forged_cancel_keys_never_cancel_another_session(
    pg: PgCluster, proxy: ProxyProcess
) -> None:
    with (
        RawConn(proxy.host, proxy.port, timeout=30) as victim,
        RawConn(proxy.host, proxy.port) as attacker,
    ):
        victim.login()
        attacker.login()
        assert victim.backend_key is not None and attacker.backend_key is not None
        pid, secret = victim.backend_key
        a_pid, a_secret = attacker.backend_key

        victim.send(rawpg.query("select 'survived' from pg_sleep(4) as victim_sleep"))
        upstream_pid = active_backend_pid(pg, "victim_sleep")
        rng = random.Random(2)
        forged = [
            (pid, secret ^ 1),
            (pid, secret + 1),
            (pid, 0),
            (pid + 1, secret),
            (upstream_pid, secret ^ 0x5A5A),
            (upstream_pid, rng.getrandbits(31)),
            (a_pid, a_secret),  # a valid key, but another session's
            *[(rng.getrandbits(31), rng.getrandbits(31)) for _ in range(5)],
        ]
        for key in forged:
            if key != (pid, secret):
                _send_cancel(proxy, *key)
        msgs = victim.read_until([b"Z"])
        errors = [m.fields for m in msgs if m.kind == b"E"]
        assert errors == [], f"victim's query was disturbed: {errors}"
        assert any(m.kind == b"D" and m.payload.endswith(b"survived") for m in msgs)

        # Control: the victim's own key does cancel it.
        victim.send(rawpg.query("select pg_sleep(30) as victim_sleep_again"))
        active_backend_pid(pg, "victim_sleep_again")
        _send_cancel(proxy, pid, secret)
        msgs = victim.read_until([b"Z"])
        assert [m.sqlstate for m in msgs if m.kind == b"E"] == ["57014"]


def test_a_cancel_is_delivered_before_its_connection_closes(proxy: ProxyProcess) -> None:
    """libpq and asyncpg send their next query once the server has closed the cancel
    connection: PostgreSQL closes it only after signalling the backend. A cancel that
    arrives after its statement ended does nothing, so it must never hit the next one."""
    with RawConn(proxy.host, proxy.port, timeout=30) as conn:
        conn.login()
        assert conn.backend_key is not None
        for _ in range(10):
            with RawConn(proxy.host, proxy.port) as cancel:
                cancel.send(rawpg.cancel_request(*conn.backend_key))
                assert cancel.read_to_close() == []  # like PQcancel: wait for the close
            conn.send(rawpg.query("SELECT pg_sleep(0.2)"))
            msgs = conn.read_until([b"Z"])
            assert [m.fields for m in msgs if m.kind == b"E"] == []


def test_the_client_sees_the_server_process_id(pg: PgCluster, proxy: ProxyProcess) -> None:
    """BackendKeyData carries the server's process ID (with a secret of the proxy's), so it
    agrees with pg_backend_pid(), notifications and pg_stat_activity (asyncpg's
    get_server_pid(), psycopg's info.backend_pid); a cancel with it still works."""
    with (
        psycopg.connect(proxy.dsn(), autocommit=True) as conn,
        psycopg.connect(proxy.dsn(), autocommit=True) as other,
    ):
        (pid,) = conn.execute("SELECT pg_backend_pid()").fetchone() or (None,)
        assert conn.info.backend_pid == pid
        assert other.info.backend_pid != pid
        conn.execute("LISTEN pgsentry_pid_check")
        conn.execute("NOTIFY pgsentry_pid_check")
        note = next(conn.notifies(timeout=5))
        assert note.pid == pid
        sleeping = Background(lambda: conn.execute("SELECT pg_sleep(30)"))
        assert active_backend_pid(pg, "pg_sleep(30)") == pid
        conn.cancel_safe()
        assert isinstance(sleeping.error(timeout=10), psycopg.errors.QueryCanceled)
