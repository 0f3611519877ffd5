"""Authentication passes through untouched: trust, md5, SCRAM-SHA-256, and PostgreSQL's own
error for a wrong password, with psycopg, asyncpg and psql."""

from __future__ import annotations

import asyncpg
import psycopg
import pytest

from pgsentry.devtools import PgCluster, ProxyProcess

from .helpers import proxy_conninfo, run_client

pytestmark = pytest.mark.timeout(60)

USERS = [
    pytest.param("postgres", None, id="trust"),
    pytest.param("md5_user", "md5_pass", id="md5"),
    pytest.param("scram_user", "scram_pass", id="scram"),
]


@pytest.mark.parametrize(("user", "password"), USERS)
def test_login_psycopg(proxy: ProxyProcess, user: str, password: str | None) -> None:
    with psycopg.connect(proxy.dsn(user, password)) as conn:
        row = conn.execute("select current_user, session_user").fetchone()
        assert row == (user, user)


@pytest.mark.parametrize(("user", "password"), USERS)
async def test_login_asyncpg(proxy: ProxyProcess, user: str, password: str | None) -> None:
    conn = await asyncpg.connect(proxy.dsn(user, password), timeout=15)
    try:
        assert await conn.fetchval("select current_user") == user
    finally:
        await conn.close()


@pytest.mark.parametrize(("user", "password"), USERS)
def test_login_psql(pg: PgCluster, proxy: ProxyProcess, user: str, password: str | None) -> None:
    out = run_client(
        pg,
        "psql",
        [
            "-X",
            "-A",
            "-t",
            "-d",
            proxy_conninfo(proxy, user, sslmode="disable"),
            "-c",
            "select current_user",
        ],
        password=password,
    )
    assert out.stdout.decode().strip() == user


@pytest.mark.parametrize("user", ["md5_user", "scram_user"])
async def test_failed_login_is_postgres_own_error(
    pg: PgCluster, proxy: ProxyProcess, user: str
) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError) as direct:
        await asyncpg.connect(pg.dsn(user, "wrong"), timeout=15, ssl=False)
    with pytest.raises(asyncpg.InvalidPasswordError) as proxied:
        await asyncpg.connect(proxy.dsn(user, "wrong"), timeout=15)
    assert proxied.value.sqlstate == "28P01"
    assert str(proxied.value) == str(direct.value)
    assert f'password authentication failed for user "{user}"' in str(proxied.value)


def test_failed_login_psycopg_then_good_login(proxy: ProxyProcess) -> None:
    with pytest.raises(
        psycopg.OperationalError, match='password authentication failed for user "scram_user"'
    ):
        psycopg.connect(proxy.dsn("scram_user", "wrong"))
    with psycopg.connect(proxy.dsn("scram_user", "scram_pass")) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


async def test_unknown_database_is_postgres_own_error(proxy: ProxyProcess) -> None:
    with pytest.raises(asyncpg.InvalidCatalogNameError) as err:
        await asyncpg.connect(proxy.dsn(dbname="no_such_db"), timeout=15)
    assert err.value.sqlstate == "3D000"
