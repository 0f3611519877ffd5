"""TLS on both legs: the proxy terminates client TLS, and speaks disable/prefer/require/
verify-full to the upstream. SCRAM must work whichever legs use TLS (channel binding is the
hard case: libpq's default channel_binding=prefer would bind when it sees SCRAM-SHA-256-PLUS)."""

from __future__ import annotations

import ssl
from pathlib import Path

import asyncpg
import psycopg
import pytest
import trustme

from pgsentry.devtools import PgCluster, ProxyProcess
from pgsentry.devtools.testkit import Certs, ProxyFactory

from .helpers import proxy_conninfo, run_client

pytestmark = pytest.mark.timeout(60)

UPSTREAM_TLS = {"disable": False, "prefer": True, "require": True, "verify-full": True}


def test_psql_sslmode_require_with_scram(
    pg: PgCluster, proxy_factory: ProxyFactory, certs: Certs
) -> None:
    """TLS on both legs: pgsentry presents the server's own certificate (the documented
    design), so the channel binding psql computes matches what PostgreSQL checks."""
    proxy = proxy_factory(tls=certs.upstream_pair)
    out = run_client(
        pg,
        "psql",
        [
            "-X",
            "-A",
            "-t",
            "-d",
            proxy_conninfo(proxy, "scram_user", sslmode="require"),
            "-c",
            r"\conninfo",
            "-c",
            "select current_user",
        ],
        password="scram_pass",
    ).stdout.decode()
    assert "SSL connection" in out
    assert out.strip().splitlines()[-1] == "scram_user"


def test_scram_channel_binding_with_another_certificate_fails_clearly(
    pg: PgCluster, proxy_factory: ProxyFactory, certs: Certs
) -> None:
    """pgsentry's own certificate differs from the server's: a client that binds gets a
    clear refusal naming the fix, and the same client with channel_binding=disable works."""
    proxy = proxy_factory(tls=certs.pair, upstream_sslmode="require")
    with pytest.raises(psycopg.OperationalError, match="channel_binding=disable"):
        psycopg.connect(proxy.dsn("scram_user", "scram_pass", sslmode="require"))
    with psycopg.connect(
        proxy.dsn("scram_user", "scram_pass", sslmode="require", channel_binding="disable")
    ) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("select current_user").fetchone() == ("scram_user",)


def test_psql_sslmode_verify_full_with_md5(
    pg: PgCluster, proxy_factory: ProxyFactory, certs: Certs
) -> None:
    proxy = proxy_factory(tls=certs.pair)
    conninfo = proxy_conninfo(proxy, "md5_user", sslmode="verify-full", sslrootcert=str(certs.ca))
    out = run_client(
        pg,
        "psql",
        ["-X", "-A", "-t", "-d", conninfo, "-c", "select current_user"],
        password="md5_pass",
    ).stdout.decode()
    assert out.strip() == "md5_user"


MATRIX = [
    pytest.param(user, password, mode, client_tls, id=f"{user}-{mode}-{tls_id}")
    for user, password, modes in [
        ("scram_user", "scram_pass", list(UPSTREAM_TLS)),
        ("md5_user", "md5_pass", ["disable", "verify-full"]),
    ]
    for mode in modes
    for client_tls, tls_id in [(False, "client-plain"), (True, "client-tls")]
]


@pytest.mark.parametrize(("user", "password", "upstream_sslmode", "client_tls"), MATRIX)
def test_tls_matrix(
    proxy_factory: ProxyFactory,
    certs: Certs,
    user: str,
    password: str,
    upstream_sslmode: str,
    client_tls: bool,
) -> None:
    proxy = proxy_factory(
        tls=certs.upstream_pair,  # the server's own certificate: channel binding matches
        upstream_sslmode=upstream_sslmode,
        upstream_ca=certs.ca if upstream_sslmode == "verify-full" else None,
    )
    dsn = (
        proxy.dsn(user, password, sslmode="verify-full", sslrootcert=str(certs.ca))
        if client_tls
        else proxy.dsn(user, password, sslmode="disable")
    )
    with psycopg.connect(dsn) as conn:
        assert conn.pgconn.ssl_in_use == client_tls
        row = conn.execute(
            "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()"
        ).fetchone()
    assert row == (user, UPSTREAM_TLS[upstream_sslmode])


async def test_asyncpg_tls_scram(proxy_factory: ProxyFactory, certs: Certs) -> None:
    proxy = proxy_factory(tls=certs.pair, upstream_sslmode="require")
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    conn = await asyncpg.connect(
        host=proxy.host,
        port=proxy.port,
        user="scram_user",
        password="scram_pass",
        database="postgres",
        ssl=ctx,
        timeout=15,
    )
    try:
        assert await conn.fetchval("select current_user") == "scram_user"
    finally:
        await conn.close()


def test_client_tls_required_by_client_but_proxy_has_no_cert(proxy: ProxyProcess) -> None:
    with pytest.raises(psycopg.OperationalError, match=r"(?i)ssl"):
        psycopg.connect(proxy.dsn(sslmode="require"))


def test_upstream_verify_full_with_wrong_ca_fails_cleanly(
    proxy_factory: ProxyFactory, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    proxy = proxy_factory(upstream_sslmode="verify-full", upstream_ca=other_ca, require_ready=False)
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(proxy.dsn("scram_user", "scram_pass"), connect_timeout=15)
    assert "timeout" not in str(err.value).lower()
    assert proxy.is_alive
