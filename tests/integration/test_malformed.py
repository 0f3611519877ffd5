"""Malformed input against the live proxy over raw sockets: each case gets an ErrorResponse
(08P01, or the server's own protocol error) or a closed connection, while a concurrent healthy
psycopg session keeps running queries and the proxy process stays alive."""

from __future__ import annotations

import random
import struct
import threading
from collections.abc import Callable, Iterator

import psycopg
import pytest

from pgsentry.devtools import ProxyProcess
from pgsentry.devtools.proxyproc import wait_until
from pgsentry.devtools.testkit import ProxyFactory

from . import rawpg
from .rawpg import Msg, RawConn

pytestmark = pytest.mark.timeout(60)

PROTOCOL_ERRORS = {"08P01"}


class HealthySession:
    """A psycopg session through the proxy running a query every few milliseconds."""

    def __init__(self, dsn: str) -> None:
        self.count = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                row = self._conn.execute("select %s::int + 1", [self.count]).fetchone()
                assert row == (self.count + 1,), row
                self.count += 1
            except BaseException as exc:
                self.errors.append(exc)
                return
            self._stop.wait(0.005)

    def assert_progress(self) -> None:
        """Fails if the session errored or does not complete a few more queries."""
        start = self.count
        wait_until(
            lambda: self.errors or self.count >= start + 3, timeout=15, what="healthy progress"
        )
        assert self.errors == [], self.errors

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._conn.close()


@pytest.fixture(scope="module")
def target(module_proxy_factory: ProxyFactory) -> ProxyProcess:
    return module_proxy_factory()


@pytest.fixture(scope="module")
def healthy(target: ProxyProcess) -> Iterator[HealthySession]:
    session = HealthySession(target.dsn())
    yield session
    session.close()


def _pre_startup(data: bytes) -> Callable[[RawConn], None]:
    def send(conn: RawConn) -> None:
        conn.send(data)
        conn.shutdown_write()

    return send


def _after_login(data: bytes, half_close: bool = False) -> Callable[[RawConn], None]:
    def send(conn: RawConn) -> None:
        conn.login()
        conn.send(data)
        if half_close:
            conn.shutdown_write()

    return send


def _startup_body(body: bytes) -> bytes:
    return struct.pack("!i", len(body) + 4) + body


V3 = struct.pack("!i", 3 << 16)

CASES: list[tuple[str, Callable[[RawConn], None], set[str]]] = [
    ("truncated-startup", _pre_startup(rawpg.startup_message()[:11]), PROTOCOL_ERRORS),
    (
        "oversize-startup-length",
        _pre_startup(struct.pack("!i", 1 << 24) + V3 + b"x" * 64),
        PROTOCOL_ERRORS,
    ),
    ("negative-startup-length", _pre_startup(struct.pack("!i", -1) + V3), PROTOCOL_ERRORS),
    ("short-startup-length", _pre_startup(struct.pack("!i", 7) + V3), PROTOCOL_ERRORS),
    ("zero-startup-length", _pre_startup(struct.pack("!i", 0) + b"\x00" * 16), PROTOCOL_ERRORS),
    ("garbage-http-request", _pre_startup(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), PROTOCOL_ERRORS),
    (
        "tls-client-hello-without-sslrequest",
        _pre_startup(bytes.fromhex("160301020001")),
        PROTOCOL_ERRORS,
    ),
    (
        "startup-without-terminator",
        _pre_startup(_startup_body(V3 + b"user\x00postgres")),
        PROTOCOL_ERRORS,
    ),
    (
        "startup-odd-params",
        _pre_startup(_startup_body(V3 + b"user\x00\x00")),
        PROTOCOL_ERRORS | {"28000"},
    ),
    (
        "unsupported-protocol-2",
        _pre_startup(rawpg.startup_message(version=(2, 0))),
        PROTOCOL_ERRORS | {"0A000"},
    ),
    (
        "cancel-request-wrong-length",
        _pre_startup(struct.pack("!iii", 12, rawpg.CANCEL_REQUEST_CODE, 1)),
        PROTOCOL_ERRORS,
    ),
    ("message-length-below-4", _after_login(b"Q" + struct.pack("!i", 2)), PROTOCOL_ERRORS),
    ("message-length-negative", _after_login(b"Q" + struct.pack("!i", -5)), PROTOCOL_ERRORS),
    (
        "oversize-message-header",
        _after_login(b"Q" + struct.pack("!i", 0x7FFFFFF0)),
        PROTOCOL_ERRORS,
    ),
    (
        "truncated-message-then-eof",
        _after_login(rawpg.query("select 1")[:9], half_close=True),
        PROTOCOL_ERRORS,
    ),
    ("unknown-message-type", _after_login(b"\x00" + struct.pack("!i", 4)), PROTOCOL_ERRORS),
    (
        "bind-without-terminators-in-an-execute-chunk",
        _after_login(rawpg.message(b"B", b"portal") + rawpg.execute("") + rawpg.sync()),
        PROTOCOL_ERRORS,
    ),
    (
        "ssl-request-after-login",
        _after_login(rawpg.ssl_request(), half_close=True),
        PROTOCOL_ERRORS,
    ),
]

RANDOM_CASES = [
    (
        f"random-bytes-{seed}",
        _pre_startup(random.Random(seed).randbytes(random.Random(seed).randint(1, 4096))),
        PROTOCOL_ERRORS | {"0A000", "28000"},
    )
    for seed in range(8)
] + [
    (
        f"random-bytes-after-login-{seed}",
        _after_login(random.Random(100 + seed).randbytes(2048), half_close=True),
        None,
    )
    for seed in range(4)
]


def _check_answer(msgs: list[Msg], allowed: set[str] | None) -> None:
    assert all(m.kind != b"R" for m in msgs), f"malformed input reached authentication: {msgs}"
    errors = [m for m in msgs if m.kind == b"E"]
    if allowed is not None:
        assert all(m.sqlstate in allowed for m in errors), [m.fields for m in errors]


@pytest.mark.parametrize(
    ("name", "send", "allowed"), CASES + RANDOM_CASES, ids=[c[0] for c in CASES + RANDOM_CASES]
)
def test_malformed_input_closes_only_that_connection(
    target: ProxyProcess,
    healthy: HealthySession,
    name: str,
    send: Callable[[RawConn], None],
    allowed: set[str] | None,
) -> None:
    healthy.assert_progress()
    with RawConn(target.host, target.port, timeout=20) as conn:
        send(conn)
        msgs = conn.read_to_close()  # socket.timeout here means the proxy left it hanging
    _check_answer(msgs, allowed)
    healthy.assert_progress()
    assert target.is_alive, target.stderr


def test_valid_startup_dribbled_one_byte_at_a_time(target: ProxyProcess) -> None:
    with RawConn(target.host, target.port) as conn:
        for byte in rawpg.startup_message():
            conn.send(bytes([byte]))
        assert conn.read_until([b"Z"])[-1].kind == b"Z"
        for byte in rawpg.query("select 'dribbled'"):
            conn.send(bytes([byte]))
        assert any(m.kind == b"D" for m in conn.read_until([b"Z"]))


def test_many_abrupt_disconnects(target: ProxyProcess, healthy: HealthySession) -> None:
    for i in range(50):
        with RawConn(target.host, target.port) as conn:
            if i % 2:
                conn.login()
                conn.send(rawpg.query("select pg_sleep(0.01)"))
            else:
                conn.send(rawpg.startup_message()[: i % 20])
    healthy.assert_progress()
    assert target.is_alive
    with psycopg.connect(target.dsn()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
