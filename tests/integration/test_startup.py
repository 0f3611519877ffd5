"""Startup-phase packets through the proxy: GSSENCRequest declined, SSLRequest answered,
plaintext buffered behind an SSLRequest refused, protocol 3.2 negotiated down exactly once."""

from __future__ import annotations

import ssl
import struct

import psycopg
import pytest

from pgsentry.devtools import ProxyProcess
from pgsentry.devtools.testkit import Certs, ProxyFactory

from . import rawpg
from .rawpg import RawConn

pytestmark = pytest.mark.timeout(60)


def test_gssencrequest_is_declined_then_startup_continues(proxy: ProxyProcess) -> None:
    with RawConn(proxy.host, proxy.port) as conn:
        conn.send(rawpg.gssenc_request())
        assert conn.read_byte() == b"N"
        msgs = conn.login()
        assert msgs[-1].kind == b"Z"


def test_psycopg_gssencmode_prefer(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(gssencmode="prefer")) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_sslrequest_without_proxy_tls_gets_n(proxy: ProxyProcess) -> None:
    with RawConn(proxy.host, proxy.port) as conn:
        conn.send(rawpg.ssl_request())
        assert conn.read_byte() == b"N"
        assert conn.login()[-1].kind == b"Z"


def test_sslrequest_with_proxy_tls_gets_s_and_tls_login(
    proxy_factory: ProxyFactory, certs: Certs
) -> None:
    proxy = proxy_factory(tls=certs.pair)
    with RawConn(proxy.host, proxy.port) as conn:
        conn.send(rawpg.ssl_request())
        assert conn.read_byte() == b"S"
        conn.start_tls(ssl.create_default_context(cafile=str(certs.ca)))
        assert conn.login()[-1].kind == b"Z"
        conn.send(rawpg.query("select 41 + 1"))
        rows = [m for m in conn.read_until([b"Z"]) if m.kind == b"D"]
        assert rows[0].payload.endswith(b"42")


def test_plaintext_buffered_behind_sslrequest_is_refused(
    proxy_factory: ProxyFactory, certs: Certs
) -> None:
    proxy = proxy_factory(tls=certs.pair)
    with RawConn(proxy.host, proxy.port) as conn:
        conn.send(rawpg.ssl_request() + rawpg.startup_message())
        first = conn.read_byte()
        if first == b"S":
            # Acceptable only if nothing is processed in plaintext: the handshake then fails
            # or the proxy reports the violation over TLS, as PostgreSQL itself does.
            try:
                conn.start_tls(ssl.create_default_context(cafile=str(certs.ca)))
            except (ssl.SSLError, OSError):
                return
        elif first == b"E":
            conn.buf = first + conn.buf
        else:
            assert first in (b"", b"N"), f"unexpected answer {first!r}"
        msgs = conn.read_to_close()
        assert all(m.kind != b"R" for m in msgs), f"plaintext startup was processed: {msgs}"
        errors = [m for m in msgs if m.kind == b"E"]
        assert all(m.sqlstate == "08P01" for m in errors), errors


def _negotiations(version: tuple[int, int], proxy: ProxyProcess, **extra: str) -> list[bytes]:
    with RawConn(proxy.host, proxy.port) as conn:
        conn.send(rawpg.startup_message(version=version, **extra))
        msgs = conn.read_until([b"Z", b"E"])
        assert msgs[-1].kind == b"Z", msgs[-1].fields if msgs[-1].kind == b"E" else msgs
        # The session works normally afterwards.
        conn.send(rawpg.query("select 'after-negotiation'"))
        after = conn.read_until([b"Z"])
        assert any(m.kind == b"D" and m.payload.endswith(b"after-negotiation") for m in after)
        return [m.payload for m in msgs if m.kind == b"v"]


def test_protocol_3_0_gets_no_negotiation(proxy: ProxyProcess) -> None:
    assert _negotiations((3, 0), proxy) == []


def test_protocol_3_2_gets_exactly_one_negotiateprotocolversion(proxy: ProxyProcess) -> None:
    negotiations = _negotiations((3, 2), proxy)
    assert len(negotiations) == 1, negotiations
    newest, n_options = struct.unpack("!ii", negotiations[0][:8])
    assert newest == (3 << 16) | 0  # PostgreSQL 15 speaks 3.0
    assert n_options == 0


def test_protocol_3_2_with_unknown_pq_option_lists_it_once(proxy: ProxyProcess) -> None:
    negotiations = _negotiations((3, 2), proxy, **{"_pq_.pgsentry_test": "1"})
    assert len(negotiations) == 1, negotiations
    newest, n_options = struct.unpack("!ii", negotiations[0][:8])
    assert newest == 3 << 16
    assert n_options == 1
    assert negotiations[0][8:] == b"_pq_.pgsentry_test\x00"


def test_libpq18_max_protocol_version_3_2_negotiates_down(proxy: ProxyProcess) -> None:
    """psycopg's bundled libpq 18 asks for 3.2 and must land on 3.0 (PostgreSQL 15)."""
    assert psycopg.pq.version() >= 180000, "needs psycopg built with libpq 18"
    with psycopg.connect(proxy.dsn(max_protocol_version="3.2")) as conn:
        assert conn.pgconn.full_protocol_version == 30000
        assert conn.execute("select 'negotiated'").fetchone() == ("negotiated",)
