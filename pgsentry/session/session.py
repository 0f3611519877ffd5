"""The per-connection state machine between one client and its upstream backend.

Owns: the protocol phase (authenticating / ready), the transaction status from
ReadyForQuery, extended-batch boundaries, named statements, and what to do with each
client message: forward it, substitute a refusal, or stop at a hold. Sans-I/O: the
proxy feeds bytes in and drains `to_server` / `to_client`.

A refused statement is never sent upstream. In its place the session sends a
statement that fails on the server (a Bind/EXECUTE of a prepared statement that
cannot exist, named with a per-session marker), so the server aborts the
transaction (or the implicit transaction of an extended batch) exactly as a real
error would and answers with the true ReadyForQuery status; the server's error is
then replaced by the refusal's ErrorResponse on its way to the client.

This module holds the `Session` itself: its state (`__slots__`, which the native Lane reads
and writes by offset: see `_records_lane.c`), the client side's message loop and the
resumption after a hold. The rest are plain functions of the session, one module per
concern: `statements` (each client statement carried out), `judging` (what its judgement
depends on), `refusals` (refusals and their markers), `responses` (the server's messages),
`auth` (the authentication exchange), `login` (the StartupMessage). The functions the proxy
or the Lane call by name are bound here as methods (`server_data`, `_emit`,
`_note_effects`), so a call costs what it would if they were defined here.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sized
from dataclasses import replace
from typing import Any

from pgsentry.analysis.facts import Analysis
from pgsentry.policy.decision import Action, Decision, Principal
from pgsentry.session import responses, statements
from pgsentry.session.auth import audit_auth, on_password
from pgsentry.session.decider import SessionDecider, Verdict
from pgsentry.session.judging import finish_judgement
from pgsentry.session.login import login_refusal
from pgsentry.session.records import InFlight, Lane, execute_batch, lane_setup
from pgsentry.session.refusals import refusal
from pgsentry.session.responses import SERVER_INSPECT, SERVER_TABLE
from pgsentry.session.state import Audit, HoldRequest, Phase
from pgsentry.session.statements import (
    STATEMENT_COUNTS,
    UNKNOWN_STATEMENT,
    carry_out,
    on_bind,
    on_execute,
    on_function_call,
    on_parse,
    on_query,
    refuse_bind,
    send_unit,
)
from pgsentry.wire import protocol as P
from pgsentry.wire.scan import type_table
from pgsentry.wire.startup import StartupMessage
from pgsentry.wire.walker import Item, MessageWalker

_unpack_len = P.UINT32.unpack_from

CLIENT_INSPECT = frozenset(b"QPBECSHXFp")
_CLIENT_TABLE = type_table(P.FRONTEND_TYPES, CLIENT_INSPECT)
_F_QUERY = P.F_QUERY
_F_BIND = P.F_BIND
_F_EXECUTE = P.F_EXECUTE
_F_SYNC = P.F_SYNC


class Session:
    """One client connection's protocol state. Feed bytes, drain the outputs."""

    __slots__ = (
        "_audit_head",
        "_backlog",
        "_batch_open",
        "_binding_mismatch",
        "_bound",
        "_client",
        "_codec",
        "_foreign_encoding",
        "_guarded",
        "_inflight",
        "_marker_base",
        "_marker_seq",
        "_markers",
        "_portals",
        "_principals",
        "_server",
        "_skip_to_sync",
        "_sql_prepared",
        "_statements",
        "application_name",
        "audit",
        "bytes_from_client",
        "bytes_from_server",
        "channel_binding_ok",
        "client_addr",
        "client_tls",
        "database",
        "decider",
        "hold",
        "phase",
        "proxy_key",
        "scs",
        "server_fatal",
        "session_id",
        "status",
        "terminated",
        "to_client",
        "to_server",
        "upstream_key",
        "user",
    )

    def __init__(
        self,
        *,
        session_id: str,
        decider: SessionDecider,
        audit: Audit,
        proxy_key: tuple[int, int],
        client_addr: str | None,
        client_tls: bool = False,
    ) -> None:
        self.session_id = session_id
        self.client_tls = client_tls
        # True when the client sees the upstream's own certificate, so SCRAM channel
        # binding computed by the client matches what the server checks (set by the proxy).
        self.channel_binding_ok = False
        self._binding_mismatch = False
        self._audit_head = b""  # the session_id audit member, built at the first record
        self.decider = decider
        self.audit = audit
        self.proxy_key = proxy_key
        self.client_addr = client_addr
        self.phase = Phase.AUTHENTICATING
        self.to_server: list[bytes | memoryview] = []
        self.to_client: list[bytes | memoryview] = []
        self.hold: HoldRequest | None = None
        self.upstream_key: tuple[int, int] | None = None
        self.terminated = False
        self.server_fatal = False  # the server sent FATAL: it closes next, the client knows why
        self.status = b"I"
        self.scs = True  # standard_conforming_strings, from ParameterStatus
        self.bytes_from_client = 0
        self.bytes_from_server = 0
        self._client = MessageWalker(CLIENT_INSPECT, P.FRONTEND_TYPES)
        self._server = MessageWalker(SERVER_INSPECT, P.BACKEND_TYPES)
        self._backlog: list[Item] = []  # client items waiting behind a hold
        self._skip_to_sync = False  # after a refused Parse, drop messages until Sync
        self._batch_open = False  # extended messages went upstream since the last Sync
        self._foreign_encoding: str | None = None  # a client_encoding pgsentry cannot read
        self._codec: str | None = None  # Python's codec for a safe client_encoding not UTF8
        self._inflight = InFlight()
        self._portals: dict[str, str] = {}  # portal -> statement name
        self._statements: dict[str, tuple[str, Verdict]] = {}  # name -> (SQL, its verdict)
        # Statements judged at each Bind: held at Parse, or prepared before a policy change
        self._guarded: dict[str, tuple[str, Verdict]] = {}
        # portal -> (SQL, verdict, hold id) of a portal bound from a statement judged at Bind
        self._bound: dict[str, tuple[str, Verdict, str | None]] = {}
        # SQL-level PREPARE name -> the PREPARE texts it may stand for (confirmed first)
        self._sql_prepared: dict[str, list[tuple[str, Analysis | None]]] = {}
        self._markers: dict[bytes, tuple[int, bytes]] = {}  # marker -> (batch, ErrorResponse)
        self._marker_base = secrets.token_hex(6)
        self._marker_seq = 0
        self.user = ""
        self.database = ""
        self.application_name = ""
        self._principals: tuple[Principal, Principal] | None = None

    # ------------------------------------------------------------------ startup
    def startup(self, msg: StartupMessage) -> None:
        """The client's StartupMessage: judge the settings it makes, negotiate the version
        down, pass it upstream. Raises StartupRefused (the connection is refused, nothing
        reaches the server) when a setting is one the policy would not let a SET make."""
        params = {k: v for k, v in msg.params.items() if not k.startswith("_pq_.")}
        self.user = params.get("user", "")
        self.database = params.get("database", self.user)
        self.application_name = params.get("application_name", "")
        self._rebuild_principal()
        refusal = login_refusal(msg, self.decider, self.principal)
        if refusal is not None:
            audit_auth(self, "refused", sqlstate=refusal.sqlstate, message=str(refusal))
            raise refusal
        if msg.minor > 0 or msg.protocol_options:
            self.to_client.append(
                P.negotiate_protocol_version(P.PROTOCOL_3_0, msg.protocol_options)
            )
        self.to_server.append(P.startup_message(params))

    def _rebuild_principal(self) -> None:
        who = Principal(self.user, self.database, self.application_name, self.client_addr)
        self._principals = (who, replace(who, in_transaction=True))

    def lane(
        self,
        *,
        write_server: Callable[[bytes], object],
        write_client: Callable[[bytes], object],
        client_slow: Callable[[bytes], object],
        server_slow: Callable[..., object],
        after_client: Callable[[], object],
        audit_lines: Sized,
        congested_above: int,
    ) -> Any:
        """The native Lane for this session (None when the extension is not built): the
        hot paths of `client_data` and `server_data` called straight from the transports,
        writing to them, and the caller's own Python path for everything else (see
        `_records_lane.c`). `after_client()` runs after a chunk the Lane forwarded when the
        session has output for the client, a hold or an end, or `len(audit_lines)` exceeds
        `congested_above` (the audit log may then be congested). The Lane knows no sockets or
        asyncio: the connection hands it the two writers, as it hands itself the outputs of
        the Python path."""
        if Lane is None:
            return None
        return Lane(
            self,
            write_server,
            write_client,
            client_slow,
            server_slow,
            after_client,
            audit_lines,
            congested_above,
        )

    @property
    def idle(self) -> bool:
        """Nothing in flight, no transaction open, nothing held: safe to close."""
        inflight = self._inflight
        return (
            self.status == b"I"
            and self.hold is None
            and not self._batch_open
            and inflight.sent_batches == inflight.done_batches
        )

    @property
    def principal(self) -> Principal:
        assert self._principals is not None
        return self._principals[self.status != b"I"]

    # ------------------------------------------------------------------ client -> server
    def client_data(self, data: bytes) -> None:
        n = len(data)
        self.bytes_from_client += n
        if (
            n > 5
            and data[0] == _F_QUERY
            and self.hold is None
            and not self._skip_to_sync
            and self._client.at_boundary
            and _unpack_len(data, 1)[0] == n - 1
        ):
            # The common case: exactly one whole Query message (the walker's answer too).
            # With the extension built, the native Lane takes a known one before this.
            on_query(self, data)
            return
        if (
            n > 5
            and data[0] == _F_BIND
            and self.hold is None
            and not self._skip_to_sync
            and not self._batch_open
            and self._client.at_boundary
            and execute_batch(
                data,
                _CLIENT_TABLE,
                self._portals,
                self._statements,
                UNKNOWN_STATEMENT,
                self._inflight,
                self.to_server,
                self._note_effects,
            )
        ):
            # Bind / Execute / Sync only (a prepared statement's execution), bookkept in
            # place and forwarded whole: none of them is judged (their statement was, at
            # Parse). `execute_batch` is native when built.
            return
        items = self._client.feed(data)
        if self.hold is not None:
            self._backlog.extend(items)
            return
        self._process_client(items)

    def _process_client(self, items: list[Item]) -> None:
        for i, item in enumerate(items):
            if self.terminated:
                return
            if not isinstance(item, tuple):
                self.to_server.append(item)  # CopyData, password messages...
                continue
            t, msg = item
            if self._skip_to_sync and t != _F_SYNC:
                continue
            # Bind, Execute and Sync first: they come with every execution of a statement.
            if t == _F_BIND:
                on_bind(self, msg)
            elif t == _F_EXECUTE:
                on_execute(self, msg)
            elif t == _F_SYNC:
                self._skip_to_sync = False
                self._queue(msg)
                self._batch_open = False
                self._inflight.sent_batches += 1
            elif t == _F_QUERY:
                on_query(self, msg)
            elif t == P.F_PARSE:
                on_parse(self, msg)
            elif t == P.F_CLOSE:
                kind, name = P.parse_close(msg[5:])
                if kind == "S":
                    self._statements.pop(name, None)
                    self._guarded.pop(name, None)
                else:
                    self._portals.pop(name, None)
                    self._bound.pop(name, None)
                self._queue(msg)
            elif t == P.F_FLUSH:
                self._queue(msg)
            elif t == P.F_FUNCTION_CALL:
                on_function_call(self, msg)
            elif t == P.F_PASSWORD:
                on_password(self, msg)
            elif t == P.F_TERMINATE:
                self.to_server.append(msg)
                self.terminated = True
            else:  # pragma: no cover - CLIENT_INSPECT lists only the types above
                self._queue(msg)
            if self.hold is not None:
                self._backlog = items[i + 1 :]
                return

    def _queue(self, msg: bytes) -> None:
        """An extended-protocol message: forwarded at once, as the server would get it
        directly (drivers watch for an error before Sync, e.g. asyncpg's executemany)."""
        self._batch_open = True
        self.to_server.append(msg)

    # ------------------------------------------------------------------ bound functions
    # The server side (responses.py) and the record of a statement's session effects
    # (statements.py): methods by name for the proxy and the native Lane, which takes
    # `_emit` and `_note_effects` from the session when it is made.
    server_data = responses.server_data
    _emit = responses.emit
    _note_effects = statements.note_effects

    # ------------------------------------------------------------------ policy
    def guard_statements(self) -> None:
        """The policy changed: every prepared statement is judged again at its next Bind."""
        self._guarded.update(self._statements)
        self._statements.clear()

    # ------------------------------------------------------------------ holds
    def resolve_judgement(self, verdict: Verdict) -> None:
        """The verdict on the text the session stopped at (HoldRequest.judge): carry it
        out, then the client messages that waited behind it."""
        request = self.hold
        assert request is not None and request.judge is not None
        self.hold = None
        verdict = finish_judgement(self, request.sql, verdict)
        carry_out(self, request.protocol, request.message, request.sql, verdict)
        if self.hold is None:
            backlog, self._backlog = self._backlog, []
            self._process_client(backlog)

    def resolve_hold(self, outcome: str, hold_id: str | None = None) -> None:
        """outcome: 'approved', 'denied[ by NAME: reason]', 'expired' or 'cancelled'."""
        hold = self.hold
        assert hold is not None and hold.verdict is not None
        self.hold = None
        verdict = hold.verdict
        if outcome != "approved":
            refused = refusal(verdict.decision, outcome)
            verdict = Verdict(
                Decision(Action.DENY, verdict.decision.rule, reason=outcome),
                verdict.analysis,
                verdict.facts,
            )
        else:
            verdict = Verdict(
                Decision(Action.ALLOW, verdict.decision.rule, reason="approved"),
                verdict.analysis,
                verdict.facts,
            )
            refused = b""
        if hold.protocol != "bind":
            send_unit(self, hold.protocol, hold.message, hold.sql, verdict, refused)
            if not refused:
                self._inflight.queue[-1].hold_id = hold_id
        else:
            portal, stmt = P.parse_bind_names(hold.message)
            if refused:
                refuse_bind(self, stmt, hold.sql, verdict, refused)
            else:  # this one execution; the statement's next Bind is judged again
                self._bound[portal] = (hold.sql, verdict, hold_id)
                self._queue(hold.message)
        backlog, self._backlog = self._backlog, []
        self._process_client(backlog)


if lane_setup is not None:
    lane_setup(
        Session,
        MessageWalker,
        Phase.READY,
        _CLIENT_TABLE,
        SERVER_TABLE,
        UNKNOWN_STATEMENT,
        STATEMENT_COUNTS,
    )
