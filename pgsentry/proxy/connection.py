"""One client connection: the asyncio glue around a `Session`.

Owns the startup phase on the socket (SSLRequest / GSSENCRequest / CancelRequest /
StartupMessage), the upstream connection, moving bytes both ways with flow control,
and carrying out what the session asks for (holds, closing). Decides nothing itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from pgsentry import metrics
from pgsentry.policy.decision import HoldSpec
from pgsentry.session.login import StartupRefused
from pgsentry.session.session import Session
from pgsentry.wire import errors as E
from pgsentry.wire.startup import (
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupDecoder,
    StartupMessage,
)

from .upstream import UpstreamError, open_upstream

if TYPE_CHECKING:
    from .server import Proxy

log = logging.getLogger(__name__)

# Texts longer than this (characters) are analysed in a process of their own
# (`Proxy.analyse_apart`); shorter ones the session stopped at on a worker thread.
ANALYSE_IN_PROCESS_ABOVE = 1 << 20


class UpstreamProtocol(asyncio.Protocol):
    """Receives the server's bytes and hands them to the client connection."""

    __slots__ = ("conn", "data_received")

    def __init__(self, conn: ClientConnection, lane: Any) -> None:
        self.conn = conn
        # The transport calls this for every response: straight to the session's Lane when
        # there is one, else to the connection; no hop.
        self.data_received = (  # type: ignore[method-assign]
            conn.server_data if lane is None else lane.server_data
        )

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.upstream_lost(exc)

    def pause_writing(self) -> None:
        self.conn.pause_client_reading()

    def resume_writing(self) -> None:
        self.conn.resume_client_reading()


class ClientConnection(asyncio.Protocol):
    """The client side of one proxied session."""

    __slots__ = (
        "_audit",
        "_early",
        "_hold_task",
        "_lane",
        "_paused_for_audit",
        "_upstream_writer",
        "client_addr",
        "close_reason",
        "closed",
        "data_received",
        "decoder",
        "hold_id",
        "proxy",
        "session",
        "session_id",
        "shutting_down",
        "started",
        "tls",
        "transport",
        "upstream",
    )

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self._audit = proxy.audit
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.session: Session | None = None
        self.decoder: StartupDecoder | None = StartupDecoder()
        self.session_id = proxy.new_session_id()
        self.client_addr: str | None = None
        self.tls = False
        self.started = time.monotonic()
        self.closed = False
        self.close_reason = "client closed"
        self.hold_id: str | None = None
        self._hold_task: asyncio.Task[None] | None = None
        self._early: list[bytes] = []  # client bytes that arrived before upstream was ready
        self._paused_for_audit = False
        self._upstream_writer: asyncio.StreamWriter | None = None
        self.shutting_down = False
        self._lane: Any = None
        # What the transport calls with the client's bytes: the Python path below until the
        # session's native Lane takes over (`_connect_upstream`).
        self.data_received: Callable[[bytes], None] = self._client_data  # type: ignore[assignment]

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's own class
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.client_addr = str(peer[0])
            port = peer[1]
        else:
            port = None
        metrics.CONNECTIONS.inc()
        metrics.CONNECTIONS_ACTIVE.inc()
        self.proxy.audit.emit(
            "connection_open",
            session_id=self.session_id,
            client_addr=self.client_addr,
            client_port=port,
        )
        self.proxy.connections.add(self)

    def _client_data(self, data: bytes) -> None:
        session = self.session
        upstream = self.upstream
        try:
            if session is None or upstream is None:
                if self.decoder is not None:
                    self._startup_data(data)
                else:
                    self._early.append(data)
                return
            session.client_data(data)
        except E.ProtocolError as exc:
            self._protocol_error("client", exc)
            return
        # The hot path: forward what the session queued; anything else goes through _flush.
        out = session.to_server
        if out:
            if len(out) == 1:
                upstream.write(out[0])
            else:
                upstream.writelines(out)
            out.clear()
        if (
            session.to_client
            or session.hold is not None
            or session.terminated
            or self._audit.congested
        ):
            self._flush()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish("client closed" if exc is None else f"client error: {exc}")

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    def pause_client_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_client_reading(self) -> None:
        if self.transport is not None and not self._paused_for_audit:
            self.transport.resume_reading()

    # ------------------------------------------------------------------ startup phase
    def _startup_data(self, data: bytes) -> None:
        decoder = self.decoder
        assert decoder is not None
        decoder.feed(data)
        packet = decoder.next_packet()
        if packet is None:
            return
        if isinstance(packet, SSLRequest):
            self._on_ssl_request(decoder)
        elif isinstance(packet, GSSENCRequest):
            self._write(b"N")
            self._startup_data(b"")
        elif isinstance(packet, CancelRequest):
            self.decoder = None
            forwarding = self.proxy.cancel(packet.pid, packet.secret)
            if self.transport is not None:
                self.transport.pause_reading()  # a cancel connection carries nothing more
            if forwarding is None:
                self._close("cancel request")
            else:  # closed once the server has the request, as PostgreSQL does
                forwarding.add_done_callback(lambda _: self._close("cancel request"))
        else:
            assert isinstance(packet, StartupMessage)
            self.decoder = None
            rest = decoder.take_remaining()
            if rest:
                self._early.append(rest)
            self._start_session(packet)

    def _on_ssl_request(self, decoder: StartupDecoder) -> None:
        ctx = self.proxy.client_tls
        if ctx is None or self.tls:
            self._write(b"N")
            self._startup_data(b"")
            return
        if decoder.buffered:
            raise E.ProtocolError("received unencrypted data after SSL request")
        self._write(b"S")
        assert self.transport is not None
        self.transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._start_tls(ctx))
        self.proxy.track(task)

    async def _start_tls(self, ctx: object) -> None:
        import ssl

        assert isinstance(ctx, ssl.SSLContext) and self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            new = await loop.start_tls(self.transport, self, ctx, server_side=True)
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            log.info("session %s: TLS handshake failed: %s", self.session_id, exc)
            self._close(f"TLS handshake failed: {exc}")
            return
        if new is None:
            self._close("TLS handshake failed")
            return
        self.transport = new
        self.tls = True

    def _start_session(self, startup: StartupMessage) -> None:
        if self.proxy.client_tls is not None and self.proxy.require_client_tls and not self.tls:
            self._fatal(E.INVALID_AUTHORIZATION, "pgsentry requires TLS (sslmode=require)")
            return
        self.session = self.proxy.new_session(self)
        try:
            self.session.startup(startup)
        except StartupRefused as exc:
            self._fatal(exc.sqlstate, str(exc))
            return
        if self.session.to_client:
            self._write_all(self.session.to_client)
        assert self.transport is not None
        self.transport.pause_reading()
        self.proxy.track(asyncio.get_running_loop().create_task(self._connect_upstream()))

    async def _connect_upstream(self) -> None:
        try:
            reader, writer, upstream_tls = await open_upstream(self.proxy.upstream)
        except UpstreamError as exc:
            metrics.UPSTREAM_CONNECT_FAILURES.inc()
            log.warning("session %s: %s", self.session_id, exc)
            self._fatal(E.CONNECTION_FAILURE, f"pgsentry: {exc}")
            return
        if self.closed:
            writer.close()
            return
        transport = cast(asyncio.Transport, writer.transport)
        self.upstream = transport
        assert self.session is not None and self.transport is not None
        audit = self.proxy.audit
        try:
            lane = self._lane = self.session.lane(
                write_server=transport.write,
                write_client=self.transport.write,
                client_slow=self._client_data,
                server_slow=self.server_data,
                after_client=self._flush,
                audit_lines=audit.lines,
                congested_above=audit.congested_above,
            )
        except Exception:  # a bug, never the client's doing: the Python path still works
            log.exception("session %s: no native Lane", self.session_id)
            lane = None
        transport.set_protocol(UpstreamProtocol(self, lane))
        if lane is not None:
            self.data_received = lane.client_data
            self.transport.set_protocol(self)  # the transport keeps the callable it calls
        if self.session is not None and upstream_tls and self.proxy.client_cert_der is not None:
            ssl_object = writer.get_extra_info("ssl_object")
            peer = ssl_object.getpeercert(binary_form=True) if ssl_object else None
            self.session.channel_binding_ok = self.tls and peer == self.proxy.client_cert_der
        self._upstream_writer = writer  # a StreamWriter closes its transport when collected
        self.proxy.audit.emit(
            "connection_tls", session_id=self.session_id, client=self.tls, upstream=upstream_tls
        )
        self._flush()
        early, self._early = self._early, []
        assert self.transport is not None
        self.transport.resume_reading()
        for chunk in early:
            self.data_received(chunk)
        del reader
        timeout = self.proxy.upstream.connect_timeout
        asyncio.get_running_loop().call_later(timeout, self._check_upstream_answered, timeout)

    def _check_upstream_answered(self, timeout: float) -> None:
        """An upstream that accepted the connection but never answered the startup."""
        session = self.session
        if not self.closed and session is not None and session.bytes_from_server == 0:
            metrics.UPSTREAM_CONNECT_FAILURES.inc()
            self._fatal(
                E.CONNECTION_FAILURE,
                f"pgsentry: the upstream server did not answer within {timeout:g}s",
                reason="upstream did not answer",
            )

    # ------------------------------------------------------------------ data flow
    def server_data(self, data: bytes, done: int | None = None) -> None:
        """The server's bytes (`done`: see Session.server_data)."""
        session = self.session
        if session is None or self.closed:
            return
        try:
            session.server_data(data, done)
        except E.ProtocolError as exc:
            self._protocol_error("server", exc)
            return
        out = session.to_client
        if out and self.transport is not None:
            if len(out) == 1:
                self.transport.write(out[0])
            else:
                self.transport.writelines(out)
            out.clear()
        if self.shutting_down and session.idle:
            self._fatal(E.ADMIN_SHUTDOWN, "terminating connection: pgsentry is shutting down")

    def _flush(self) -> None:
        session = self.session
        assert session is not None
        out = session.to_server
        if out and self.upstream is not None:
            if len(out) == 1:
                self.upstream.write(out[0])
            else:
                self.upstream.writelines(out)
            out.clear()
        if session.to_client:
            self._write_all(session.to_client)
        if session.hold is not None and self._hold_task is None:
            self._hold_task = asyncio.get_running_loop().create_task(self._run_hold())
        if session.terminated:
            self._close("client terminated")
            return
        audit = self.proxy.audit
        if audit.congested and not self._paused_for_audit:
            self._paused_for_audit = True
            assert self.transport is not None
            self.transport.pause_reading()
            self.proxy.track(asyncio.get_running_loop().create_task(self._wait_audit()))

    async def _wait_audit(self) -> None:
        await self.proxy.audit.drained()
        self._paused_for_audit = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # ------------------------------------------------------------------ holds
    async def _run_hold(self) -> None:
        session = self.session
        assert session is not None and session.hold is not None
        request = session.hold
        judgement = request.judge
        if judgement is not None:  # a long text: judged off the event loop
            try:
                analysis = None
                if judgement.needs_analysis and len(judgement.sql) > ANALYSE_IN_PROCESS_ABOVE:
                    analysis = await self.proxy.analyse_apart(judgement.sql, judgement.scs)
                verdict = await asyncio.to_thread(judgement.decide_apart, analysis)
            except Exception as exc:  # fail closed: the client gets an error, not a hang
                log.warning("session %s: judging a long text failed: %r", self.session_id, exc)
                verdict = judgement.failed(exc)
            finally:
                self._hold_task = None
            if not self.closed:
                session.resolve_judgement(verdict)
                self._flush()  # which starts the hold if the verdict is one
            return
        assert request.verdict is not None
        decision = request.verdict.decision
        hold_id = None
        try:
            outcome = await self.proxy.run_hold(self, request.sql, request.verdict, decision)
        finally:
            hold_id, self.hold_id = self.hold_id, None
            self._hold_task = None
        if self.closed:
            return
        session.resolve_hold(outcome, hold_id)
        self._flush()

    def notice(self, data: bytes) -> None:
        self._write(data)

    # ------------------------------------------------------------------ endings
    def upstream_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        session = self.session
        if session is not None and (session.terminated or session.server_fatal):
            self._close("client terminated" if session.terminated else "server ended the session")
            return
        log.info("session %s: upstream closed the connection (%s)", self.session_id, exc)
        self._fatal(
            E.CONNECTION_FAILURE,
            "pgsentry: the upstream server closed the connection unexpectedly",
            reason="upstream closed",
        )

    def _protocol_error(self, side: str, exc: E.ProtocolError) -> None:
        metrics.PROTOCOL_ERRORS.labels(side).inc()
        log.warning("session %s: protocol error from %s: %s", self.session_id, side, exc)
        self.proxy.audit.emit(
            "protocol_error", session_id=self.session_id, side=side, detail=str(exc)
        )
        if side == "client":
            self._fatal(exc.sqlstate, str(exc), reason="protocol error")
        else:
            self._fatal(E.PROTOCOL_VIOLATION, "pgsentry: invalid data from the upstream server")

    def _fatal(self, sqlstate: str, message: str, reason: str | None = None) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(E.fatal(sqlstate, message))
        self._close(reason or message)

    def shutdown(self) -> None:
        """Graceful stop: close now if idle, else after the statement in flight."""
        self.shutting_down = True
        if self._lane is not None:
            self._lane.detach()  # the Python path checks for the end of the statement
        session = self.session
        if session is None or session.idle:
            self._fatal(E.ADMIN_SHUTDOWN, "terminating connection: pgsentry is shutting down")

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def _write_all(self, out: list[bytes | memoryview]) -> None:
        if self.transport is not None and not self.closed:
            self.transport.writelines(out)
        out.clear()

    def _close(self, reason: str) -> None:
        if self.closed:
            return
        self.close_reason = reason
        if self.transport is not None:
            self.transport.close()
        if self.upstream is not None:
            self.upstream.close()
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.close()
        if self.closed:
            return
        self.closed = True
        # The transports are closed: break the reference cycles through `data_received`
        # (the connection's own bound method, or the Lane's that holds it).
        self.data_received = _discard
        if self._lane is not None:
            self._lane.detach()
            self._lane = None
        if self.hold_id is not None:
            self.proxy.abandon_hold(self.hold_id)
        if self._hold_task is not None:
            self._hold_task.cancel()
        metrics.CONNECTIONS_ACTIVE.dec()
        session = self.session
        sent = session.bytes_from_client if session else 0
        received = session.bytes_from_server if session else 0
        metrics.BYTES.labels("client_to_server").inc(sent)
        metrics.BYTES.labels("server_to_client").inc(received)
        self.proxy.audit.emit(
            "connection_close",
            session_id=self.session_id,
            duration_ms=round((time.monotonic() - self.started) * 1000, 3),
            bytes_from_client=sent,
            bytes_from_server=received,
            reason=self.close_reason if reason == "client closed" else reason,
        )
        self.proxy.forget(self)


def _discard(data: bytes) -> None:
    """A finished connection's `data_received` (its transports no longer read)."""


__all__ = ["ClientConnection", "HoldSpec"]
