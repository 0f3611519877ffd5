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
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sized
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Protocol

from pgsentry import metrics
from pgsentry.analysis.encodings import python_codec, safe_client_encoding
from pgsentry.analysis.facts import Analysis
from pgsentry.audit.encode import members
from pgsentry.policy.decision import Action, Decision, Principal
from pgsentry.session.decider import (
    Judgement,
    SessionDecider,
    Verdict,
    decision_labels,
    verdict_facts,
)
from pgsentry.session.login import login_refusal
from pgsentry.session.records import (
    InFlight,
    Lane,
    Record,
    execute_batch,
    lane_setup,
    query_known,
    record_execute,
    respond,
)
from pgsentry.wire import errors as E
from pgsentry.wire import protocol as P
from pgsentry.wire.protocol import parse_query
from pgsentry.wire.scan import type_table
from pgsentry.wire.startup import StartupMessage
from pgsentry.wire.walker import Item, MessageWalker

_unpack_len = P.UINT32.unpack_from

CLIENT_INSPECT = frozenset(b"QPBECSHXFp")
SERVER_INSPECT = frozenset(b"RKSZCEvIs")
_SERVER_TABLE = type_table(P.BACKEND_TYPES, SERVER_INSPECT)
_CLIENT_TABLE = type_table(P.FRONTEND_TYPES, CLIENT_INSPECT)
_MAX_BODIES = 8  # bodies remembered per SQL-level prepared name
# Texts longer than this (characters) are judged on a worker thread (`HoldRequest.judge`):
# a full analysis costs up to a few µs per token, so 16 KiB is tens of milliseconds.
JUDGE_ON_LOOP_MAX = 16 * 1024
_HIGH_BEFORE_BACKSLASH = re.compile(r"[^\x00-\x7f]\\")  # characters, not SQL
_F_QUERY = P.F_QUERY
_F_BIND = P.F_BIND
_F_EXECUTE = P.F_EXECUTE
_F_SYNC = P.F_SYNC
_B_PARAMETER_STATUS = P.B_PARAMETER_STATUS
_OUTCOME_SQLSTATE = {"denied": E.INSUFFICIENT_PRIVILEGE, "cancelled": E.QUERY_CANCELED}


class Audit(Protocol):
    def emit(self, event: str, /, **fields: object) -> None: ...

    def emit_line(self, line: bytes) -> None: ...


class Phase(Enum):
    AUTHENTICATING = "authenticating"
    READY = "ready"


@dataclass(slots=True)
class HoldRequest:
    """The session stopped at a statement: policy holds it (the proxy asks the approvers,
    then calls `resolve_hold`), or it is too long to judge on the event loop (`judge` set:
    the proxy decides it apart, then calls `resolve_judgement`)."""

    sql: str
    verdict: Verdict | None
    protocol: str
    message: bytes = field(repr=False, default=b"")
    judge: Judgement | None = field(repr=False, default=None)


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
            self._audit_auth("refused", sqlstate=refusal.sqlstate, message=str(refusal))
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
            self._on_query(data)
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
                _UNKNOWN,
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
                self._on_bind(msg)
            elif t == _F_EXECUTE:
                self._on_execute(msg)
            elif t == _F_SYNC:
                self._skip_to_sync = False
                self._queue(msg)
                self._batch_open = False
                self._inflight.sent_batches += 1
            elif t == _F_QUERY:
                self._on_query(msg)
            elif t == P.F_PARSE:
                self._on_parse(msg)
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
                self._on_function_call(msg)
            elif t == P.F_PASSWORD:
                self._on_password(msg)
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

    def _judge(self, sql: str) -> Verdict:
        return self._finish_judgement(sql, self._judgement(sql).decide())

    def _judgement(self, sql: str) -> Judgement:
        """The decision on `sql` as the session stands now (made now, or apart)."""
        assert self._principals is not None
        scs = self._scs_now()
        return Judgement(
            sql,
            self._principals[self.status != b"I"],
            scs,
            self._unreadable(sql, scs is None),
            self.decider,
        )

    def _finish_judgement(self, sql: str, verdict: Verdict) -> Verdict:
        analysis = verdict.analysis
        if analysis is not None and analysis.session_effects:
            verdict = self._session_effects(sql, verdict)
        count_decision(verdict)
        return verdict

    def _text(self, sql: str) -> str:
        """A statement's text as the server reads it: the wire layer decodes UTF-8 (bytes
        that are not, as surrogates); a session in another safe encoding re-reads it."""
        if self._codec is None or sql.isascii():
            return sql
        return sql.encode("utf-8", "surrogateescape").decode(self._codec, "surrogateescape")

    def _unreadable(self, sql: str, unsettled: bool) -> str | None:
        """Why the server may read `sql` otherwise than pgsentry because of its encoding.

        ASCII reads the same in every encoding. In a client-only encoding (SJIS, BIG5...)
        the byte after a non-ASCII one may belong to the same character: a backslash there
        would not escape what pgsentry reads it escaping. While statements are in flight
        the encoding is not known (one of them may call a function that sets it), so a
        non-ASCII character right before a backslash is refused then too.
        """
        if sql.isascii():
            return None
        if self._foreign_encoding is not None:
            return (
                f"client_encoding is {self._foreign_encoding}, in which a quote or "
                "backslash can hide inside a multibyte character; pgsentry reads UTF8 and "
                "the encodings PostgreSQL allows for a server (SET client_encoding = 'UTF8')"
            )
        if unsettled and _HIGH_BEFORE_BACKSLASH.search(sql):
            return (
                "a non-ASCII character before a backslash, sent before the answer to an "
                "earlier statement that may change client_encoding; send it on its own"
            )
        return None

    def _scs_now(self) -> bool | None:
        """standard_conforming_strings for a text judged now: the server's last report when
        everything sent before has been answered (ParameterStatus comes before
        ReadyForQuery), else not known (None): a statement still ahead of it may change the
        setting (SET, RESET, a function that sets it, the end of a transaction)."""
        inflight = self._inflight
        if (
            self.phase is Phase.READY
            and inflight.sent_batches == inflight.done_batches
            and not self._batch_open
        ):
            return self.scs
        return None  # during login too: the settings the server applies are reported last

    def _session_effects(self, sql: str, verdict: Verdict) -> Verdict:
        """EXECUTE of an SQL-level prepared statement: judge its body again, now (who,
        when and in which transaction may have changed since PREPARE)."""
        assert verdict.analysis is not None
        for effect, value in verdict.analysis.session_effects:
            if effect != "execute":
                continue
            for body_sql, analysis in self._sql_prepared.get(value, ()):
                # the server parsed the body at PREPARE: its analysis then still holds
                body = self.decider.decide(body_sql, self.principal, self.scs, analysis)
                if _severity(body.decision) > _severity(verdict.decision):
                    verdict = body
        return verdict

    def _effects_sent(
        self, sql: str, effects: tuple[tuple[str, str], ...], analysis: Analysis | None
    ) -> None:
        """An allowed text with PREPARE went upstream: the server may now have the name.

        Names map to every body they may have (a PREPARE the server rejects does not
        replace the name), so an EXECUTE is judged against each of them.
        """
        for effect, value in effects:
            if effect == "prepare":
                bodies = self._sql_prepared.setdefault(value, [])
                if all(body != sql for body, _ in bodies):
                    if len(bodies) >= _MAX_BODIES:
                        bodies.pop(1)  # keep the confirmed one (first) and the newest
                    bodies.append((sql, analysis))

    def _effects_confirmed(
        self, sql: str, effects: tuple[tuple[str, str], ...], analysis: Analysis | None
    ) -> None:
        """The text completed without error: the server applied its effects."""
        for effect, value in effects:
            if effect == "prepare":
                self._sql_prepared[value] = [(sql, analysis)]
            elif effect == "deallocate":
                if value == "*":
                    self._sql_prepared.clear()
                else:
                    self._sql_prepared.pop(value, None)
            elif effect == "discard" and value in ("all", "plans"):
                self._sql_prepared.clear()
                if value == "all":
                    self._statements.clear()
                    self._guarded.clear()

    def _on_query(self, msg: bytes) -> None:
        """A Query: judge its text, then forward it, refuse it, or stop at a hold.

        A text of a shape already judged a plain ALLOW goes through `query_known` (native
        when built; the native Lane calls it straight from the transport).
        """
        if not query_known(
            msg,
            self.decider,
            self.status != b"I",
            self._inflight,
            self.to_server,
            _STATEMENT_COUNTS,
        ):
            self._judge_query(msg)

    def _judge_query(self, msg: bytes) -> None:
        """A Query `query_known` did not take (a new shape, a refusal, a hold...)."""
        self._carry_out("simple", msg, self._text(parse_query(msg)), None)

    def _carry_out(self, protocol: str, msg: bytes, sql: str, verdict: Verdict | None) -> None:
        """Send a Query or Parse, refuse it or stop at a hold, judging it first unless
        `verdict` is given. A text longer than JUDGE_ON_LOOP_MAX stops the session instead
        (a HoldRequest with `judge`): analysing it takes long enough to stall every other
        session, so the proxy makes that decision apart and calls `resolve_judgement`."""
        if verdict is None:
            judgement = self._judgement(sql)
            if len(sql) > JUDGE_ON_LOOP_MAX:
                self.hold = HoldRequest(sql, None, protocol, msg, judge=judgement)
                return
            verdict = self._finish_judgement(sql, judgement.decide())
        if verdict.decision.action is Action.HOLD and protocol != "extended":
            verdict_facts(verdict)  # the hold's notification carries them
            self.hold = HoldRequest(sql, verdict, protocol, msg)
        elif protocol == "simple":
            self._send_unit("simple", msg, sql, verdict, self._refusal_for(verdict))
        else:
            name, _ = P.parse_parse(msg[5:])
            self._send_parse(msg, name, sql, verdict)

    def resolve_judgement(self, verdict: Verdict) -> None:
        """The verdict on the text the session stopped at (HoldRequest.judge): carry it
        out, then the client messages that waited behind it."""
        request = self.hold
        assert request is not None and request.judge is not None
        self.hold = None
        verdict = self._finish_judgement(request.sql, verdict)
        self._carry_out(request.protocol, request.message, request.sql, verdict)
        if self.hold is None:
            backlog, self._backlog = self._backlog, []
            self._process_client(backlog)

    def _send_unit(
        self, protocol: str, msg: bytes, text: str, verdict: Verdict, refusal: bytes
    ) -> None:
        """Send a Query or FunctionCall (a batch of its own), or its refusal."""
        inflight = self._inflight
        rec = Record(protocol, text, verdict, inflight.open_batch)
        inflight.queue.append(rec)
        if refusal:
            self._refuse_simple(refusal)
        else:
            self.to_server.append(msg)
            self._note_effects(rec, text, verdict)
        inflight.sent_batches += 1

    def _note_effects(self, rec: Record, sql: str, verdict: Verdict) -> None:
        analysis = verdict.analysis
        if analysis is not None and analysis.session_effects:
            rec.effects = analysis.session_effects
            self._effects_sent(sql, rec.effects, analysis)

    def _on_function_call(self, msg: bytes) -> None:
        oid = P.parse_function_call_oid(msg[5:])
        decision = self.decider.decide_function_call(oid, self.principal)
        verdict = Verdict(decision, None, [{"kind": "function_call", "oid": oid}])
        if decision.action is Action.HOLD:
            self.hold = HoldRequest(f"<FunctionCall oid={oid}>", verdict, "function_call", msg)
            return
        self._send_function_call(msg, verdict)

    def _send_function_call(self, msg: bytes, verdict: Verdict) -> None:
        self._send_unit(
            "function_call", msg, str(verdict.facts), verdict, self._refusal_for(verdict)
        )

    def _on_parse(self, msg: bytes) -> None:
        _, sql = P.parse_parse(msg[5:])
        self._carry_out("extended", msg, self._text(sql), None)

    def _send_parse(self, msg: bytes, name: str, sql: str, verdict: Verdict) -> None:
        """A Parse: an allowed statement runs at every Bind without judgement; a held one
        is parsed (which runs nothing) and judged, so held, at each of its Binds, where
        the approvers see its parameters; a denied one is refused now."""
        action = verdict.decision.action
        if action is not Action.DENY:
            if action is Action.ALLOW:
                self._statements[name] = (sql, verdict)
                self._guarded.pop(name, None)
            else:
                self._statements.pop(name, None)
                self._guarded[name] = (sql, verdict)
            self._queue(msg)
            return
        self._statements.pop(name, None)
        self._guarded.pop(name, None)
        self._audit_parse(name, sql, verdict)
        marker = self._new_marker(self._refusal(verdict.decision))
        self._queue(P.message(b"B", b"\0" + marker + b"\0\0\0\0\0\0\0"))
        self._skip_to_sync = True

    def _audit_parse(self, name: str, sql: str, verdict: Verdict) -> None:
        d = verdict.decision
        self.audit.emit(
            "statement",
            session_id=self.session_id,
            protocol="extended",
            phase="parse",
            statement_name=name,
            text=sql,
            decision=d.action.value,
            would=d.would.value if d.would else None,
            would_rule=d.would_rule,
            rule=d.rule,
            facts=verdict_facts(verdict),
        )

    def _on_execute(self, msg: bytes) -> None:
        bound = self._bound.get(P.parse_execute_portal(msg)) if self._bound else None
        if bound is None:
            self._record_execute(msg)
        else:  # a portal of a statement judged at its Bind
            sql, verdict, hold_id = bound
            inflight = self._inflight
            portal = P.parse_execute_portal(msg)
            rec = Record(
                "extended",
                sql,
                verdict,
                inflight.sent_batches + 1,
                self._portals.get(portal, ""),
                portal,
            )
            rec.hold_id = hold_id
            inflight.queue.append(rec)
            self._note_effects(rec, sql, verdict)
        self._queue(msg)

    def _on_bind(self, msg: bytes) -> None:
        """A Bind. Of a statement that runs without judgement: bookkept and forwarded.
        Of a statement judged at each execution (held at Parse, prepared before a policy
        reload, or prepared in SQL): judged now, so forwarded, refused, or held."""
        portal, stmt = P.parse_bind_names(msg)
        self._portals[portal] = stmt
        self._bound.pop(portal, None)
        if stmt in self._statements:
            self._queue(msg)
            return
        candidates = self._bind_candidates(stmt)
        if not candidates:
            self._queue(msg)  # a name pgsentry never saw prepared: the server reports it
            return
        verdict: Verdict | None = None
        sql = candidates[0][0]
        for body_sql, analysis in candidates:
            one = self.decider.decide(body_sql, self.principal, self.scs, analysis)
            if verdict is None or _severity(one.decision) > _severity(verdict.decision):
                sql, verdict = body_sql, one
        assert verdict is not None
        count_decision(verdict)
        action = verdict.decision.action
        if action is Action.ALLOW:
            guarded = self._guarded.get(stmt)
            if guarded is not None and guarded[1].decision.action is Action.ALLOW:
                # allowed at Parse, judged again after a policy change: runs freely again
                del self._guarded[stmt]
                self._statements[stmt] = (sql, verdict)
            self._bound[portal] = (sql, verdict, None)
            self._queue(msg)
        elif action is Action.HOLD:
            verdict_facts(verdict)
            self.hold = HoldRequest(with_parameters(sql, msg), verdict, "bind", msg)
        else:
            self._refuse_bind(stmt, sql, verdict, self._refusal(verdict.decision))

    def _bind_candidates(self, stmt: str) -> list[tuple[str, Analysis | None]]:
        """The texts a Bind of `stmt` may run, with their analyses when known."""
        guarded = self._guarded.get(stmt)
        if guarded is not None:
            return [(guarded[0], guarded[1].analysis)]
        return list(self._sql_prepared.get(stmt, ()))

    def _refuse_bind(self, stmt: str, sql: str, verdict: Verdict, refusal: bytes) -> None:
        """The Bind is replaced by one the server rejects; the client gets `refusal`."""
        self._audit_parse(stmt, sql, verdict)
        self._queue(P.message(b"B", b"\0" + self._new_marker(refusal) + b"\0" * 7))
        self._skip_to_sync = True

    def guard_statements(self) -> None:
        """The policy changed: every prepared statement is judged again at its next Bind."""
        self._guarded.update(self._statements)
        self._statements.clear()

    def _record_bind(self, msg: bytes) -> None:
        """A Bind: remember which statement its portal runs."""
        portal, stmt = P.parse_bind_names(msg)
        self._portals[portal] = stmt

    def _record_execute(self, msg: bytes) -> None:
        """An Execute: the in-flight record of the statement behind its portal."""
        record_execute(
            msg,
            self._portals,
            self._statements,
            _UNKNOWN,
            self._inflight,
            self._note_effects,
        )

    # ------------------------------------------------------------------ refusals
    def _refusal(self, decision: Decision, outcome: str | None = None) -> bytes:
        rule = decision.rule or "default"
        if outcome == "cancelled":
            return E.error_response(E.QUERY_CANCELED, "canceling statement due to user request")
        if outcome == "expired":
            return E.error_response(
                E.HOLD_TIMEOUT,
                f"pgsentry: held statement was not approved in time (rule {rule})",
                hint="Ask an approver to review it sooner, or run it again.",
            )
        if outcome is not None and outcome.startswith("denied"):
            return E.error_response(
                E.INSUFFICIENT_PRIVILEGE,
                f"pgsentry: held statement was denied{outcome[6:]} (rule {rule})",
                hint="The statement did not run.",
            )
        what = "held for approval" if decision.action is Action.HOLD else "denied"
        message = f"pgsentry: statement {what} by rule {rule}"
        if decision.message:
            message += f": {decision.message}"
        return E.error_response(
            E.INSUFFICIENT_PRIVILEGE,
            message,
            detail=decision.reason or None,
            hint="The statement did not reach the database. "
            "Ask your security team if it should be allowed.",
        )

    def _refusal_for(self, verdict: Verdict) -> bytes:
        if verdict.decision.action is Action.ALLOW:
            return b""
        return self._refusal(verdict.decision)

    def _new_marker(self, error: bytes) -> bytes:
        self._marker_seq += 1
        marker = f"pgsentry_refused_{self._marker_base}_{self._marker_seq}".encode()
        self._markers[marker] = (self._inflight.open_batch, error)
        return marker

    def _refuse_simple(self, error: bytes) -> None:
        marker = self._new_marker(error)
        self.to_server.append(P.query("EXECUTE " + marker.decode()))

    # ------------------------------------------------------------------ holds
    def resolve_hold(self, outcome: str, hold_id: str | None = None) -> None:
        """outcome: 'approved', 'denied[ by NAME: reason]', 'expired' or 'cancelled'."""
        hold = self.hold
        assert hold is not None and hold.verdict is not None
        self.hold = None
        verdict = hold.verdict
        if outcome != "approved":
            refusal = self._refusal(verdict.decision, outcome)
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
            refusal = b""
        if hold.protocol != "bind":
            self._send_unit(hold.protocol, hold.message, hold.sql, verdict, refusal)
            if not refusal:
                self._inflight.queue[-1].hold_id = hold_id
        else:
            portal, stmt = P.parse_bind_names(hold.message)
            if refusal:
                self._refuse_bind(stmt, hold.sql, verdict, refusal)
            else:  # this one execution; the statement's next Bind is judged again
                self._bound[portal] = (hold.sql, verdict, hold_id)
                self._queue(hold.message)
        backlog, self._backlog = self._backlog, []
        self._process_client(backlog)

    # ------------------------------------------------------------------ server -> client
    def server_data(self, data: bytes, done: int | None = None) -> None:
        """Server bytes: watch the messages that matter, forward everything else as is.

        In the common case nothing is rewritten and no message straddles the chunk, so
        the chunk itself is forwarded: one write, no copy. `done` is given by the Lane when
        it has already passed `respond` over the chunk (aligned, READY, no markers) and
        that took the first `done` bytes.
        """
        self.bytes_from_server += len(data)
        walker = self._server
        aligned = walker.at_boundary
        assert done is None or (aligned and self.phase is Phase.READY and not self._markers)
        if aligned:
            if done is None and self.phase is Phase.READY and not self._markers:
                # The whole messages at the start that need no rewriting (every response's
                # CommandComplete and ReadyForQuery): `respond`, native when built.
                done, status = respond(
                    data,
                    0,
                    _SERVER_TABLE,
                    self._inflight,
                    self._audit_head or self._new_audit_head(),
                    self.audit.emit_line,
                    self._emit,
                )
                if status is not None:
                    self.status = status
            if done is None:
                done = 0  # authenticating, or markers to rewrite: the walker does it all
            elif done + 5 <= len(data) and data[done] == _B_PARAMETER_STATUS:
                done = self._server_whole_messages(data, done)
            if done == len(data):
                self.to_client.append(data)
                return
            if done:
                self.to_client.append(data[:done])
                data = data[done:]
        items = walker.feed(data)
        replaced: dict[int, bytes] | None = None
        for i, item in enumerate(items):
            if not isinstance(item, tuple):
                continue
            t, msg = item
            if t == P.B_READY_FOR_QUERY:
                self._on_ready(msg[5:6])
                continue
            if t == P.B_COMMAND_COMPLETE:
                rec = self._inflight.add_tag(P.parse_command_tag(msg[5:]))
                if rec is not None:
                    self._emit(rec)
                continue
            if t == P.B_ERROR_RESPONSE:
                new = self._on_error(msg)
            elif t == P.B_EMPTY_QUERY or t == P.B_PORTAL_SUSPENDED:
                rec = self._inflight.end_execute()
                if rec is not None:
                    self._emit(rec)
                continue
            elif t == P.B_PARAMETER_STATUS:
                self._on_parameter_status(msg)
                continue
            elif t == P.B_AUTHENTICATION:
                new = self._on_authentication(msg)
            elif t == P.B_BACKEND_KEY_DATA:
                if len(msg) == 13:
                    self.upstream_key = (
                        P.UINT32.unpack_from(msg, 5)[0],
                        P.UINT32.unpack_from(msg, 9)[0],
                    )
                    # the server's process ID, the proxy's secret (see Proxy.new_session)
                    self.proxy_key = (self.upstream_key[0], self.proxy_key[1])
                new = P.backend_key_data(*self.proxy_key)
            elif t == P.B_NEGOTIATE_PROTOCOL_VERSION:
                new = b""  # we asked for 3.0 only; the client got our own negotiation
            else:
                continue
            if new is not msg:
                if replaced is None:
                    replaced = {}
                replaced[i] = new
        if replaced is None and aligned and walker.at_boundary:
            self.to_client.append(data)
            return
        out = self.to_client
        for i, item in enumerate(items):
            if isinstance(item, tuple):
                out.append(replaced[i] if replaced and i in replaced else item[1])
            else:
                out.append(item)

    def _server_whole_messages(self, data: bytes, pos: int) -> int:
        """From a ParameterStatus at `pos`, go on with the whole messages that need no
        rewriting (see `server_data`). Returns where it stopped: at the end, at an
        incomplete message (the walker then takes over), or at a message that may be
        rewritten or is malformed."""
        n = len(data)
        while pos + 5 <= n and data[pos] == _B_PARAMETER_STATUS:
            length = _unpack_len(data, pos + 1)[0]
            end = pos + 1 + length
            if length < 4 or end > n:
                return pos
            self._on_parameter_status(data[pos:end])
            pos, status = respond(
                data,
                end,
                _SERVER_TABLE,
                self._inflight,
                self._audit_head,
                self.audit.emit_line,
                self._emit,
            )
            if status is not None:
                self.status = status
        return pos

    def _new_audit_head(self) -> bytes:
        """The session_id member of this session's audit records (built at the first one)."""
        self._audit_head = members(session_id=self.session_id)
        return self._audit_head

    def _on_ready(self, status: bytes) -> None:
        """A ReadyForQuery (its body: the transaction status): close the oldest batch."""
        self.status = status
        if self.phase is Phase.AUTHENTICATING:
            self.phase = Phase.READY
            self._audit_auth("ok")
            return
        inflight = self._inflight
        inflight.done_batches += 1
        done = inflight.done_batches
        queue = inflight.queue
        while queue and queue[0].batch <= done:
            self._emit(queue.popleft())
        if self._markers:
            for marker, (batch, _) in list(self._markers.items()):
                if batch <= done:
                    del self._markers[marker]

    def _audit_auth(self, outcome: str, **extra: object) -> None:
        self.audit.emit(
            "connection_auth",
            session_id=self.session_id,
            user=self.user,
            database=self.database,
            application_name=self.application_name,
            outcome=outcome,
            **extra,
        )

    def _on_error(self, msg: bytes) -> bytes:
        for marker, (_, refusal) in self._markers.items():
            if marker in msg:
                del self._markers[marker]
                msg = refusal
                break
        fields = E.parse_error_fields(msg[5:])
        sqlstate = fields.get("C", "")
        if fields.get("V", fields.get("S")) in ("FATAL", "PANIC"):
            self.server_fatal = True
        if self.phase is Phase.AUTHENTICATING:
            self._audit_auth("failed", sqlstate=sqlstate, message=fields.get("M"))
            return msg
        rec = self._inflight.error(sqlstate)
        if rec is not None:
            self._emit(rec)
        return msg

    def _emit(self, rec: Record) -> None:
        if rec.effects and rec.sqlstate is None:
            self._effects_confirmed(rec.text, rec.effects, rec.verdict.analysis)
        self.audit.emit_line(rec.audit_line(self._audit_head or self._new_audit_head()))
        if rec.hold_id is not None:
            self.audit.emit(
                "hold_executed",
                hold_id=rec.hold_id,
                session_id=self.session_id,
                command_tag="; ".join(rec.tags) or None,
                sqlstate=rec.sqlstate,
                outcome="error" if rec.sqlstate else "ok",
            )

    def _on_parameter_status(self, msg: bytes) -> None:
        name, value = P.parse_parameter_status(msg[5:])
        if name == "standard_conforming_strings":
            self.scs = value == "on"
        elif name == "client_encoding":
            safe = safe_client_encoding(value)
            self._foreign_encoding = None if safe else value
            self._codec = python_codec(value) if safe else None
        elif name == "application_name" and value != self.application_name:
            self.application_name = value
            self._rebuild_principal()
            self.decider.reset()

    def _on_authentication(self, msg: bytes) -> bytes:
        """Relay authentication untouched, except SCRAM channel binding on a plain client leg.

        A server reached over TLS offers SCRAM-SHA-256-PLUS. A client on a plaintext leg must
        not be offered it (libpq rejects the offer), so it is removed; the client then uses
        SCRAM-SHA-256 with gs2 flag 'n', which the server accepts. With TLS on both legs the
        offer passes through: channel binding then succeeds when the proxy presents the
        server's own certificate (see the README).
        """
        if len(msg) < 9:
            raise E.ProtocolError("Authentication message too short")
        if P.INT32.unpack_from(msg, 5)[0] != P.AUTH_SASL:
            return msg
        mechanisms = P.sasl_mechanisms(msg[5:])
        plain = [m for m in mechanisms if not m.endswith("-PLUS")]
        if plain == mechanisms:
            return msg
        if not self.client_tls:
            return P.authentication_sasl(plain)
        self._binding_mismatch = not self.channel_binding_ok
        return msg

    def _on_password(self, msg: bytes) -> None:
        """SASLInitialResponse et al. pass through, unless channel binding cannot match."""
        if self._binding_mismatch and msg[5:].startswith(b"SCRAM-SHA-256-PLUS\0"):
            self.to_client.append(
                E.fatal(
                    E.INVALID_AUTHORIZATION,
                    "pgsentry: SCRAM channel binding cannot pass through pgsentry: the client "
                    "would bind to pgsentry's certificate, not the database server's. Configure "
                    "pgsentry with the server's certificate and key, or connect with "
                    "channel_binding=disable.",
                )
            )
            self.terminated = True
            return
        self.to_server.append(msg)


# An Execute of a statement the proxy never saw parsed (it cannot run: the server
# does not have it either, or it was prepared before a DISCARD the server reports).
_UNKNOWN = ("", Verdict(Decision(Action.ALLOW, reason="statement judged at Parse"), None, None))


def count_decision(verdict: Verdict) -> None:
    """pgsentry_statements_total{decision, rule} (the labels are kept on the verdict)."""
    metrics.STATEMENTS.inc(verdict.labels or decision_labels(verdict))


# The counter's values, updated in place by the Query hot path (`query_known`).
_STATEMENT_COUNTS = metrics.STATEMENTS.values

if lane_setup is not None:
    lane_setup(
        Session,
        MessageWalker,
        Phase.READY,
        _CLIENT_TABLE,
        _SERVER_TABLE,
        _UNKNOWN,
        _STATEMENT_COUNTS,
    )


_SHOWN_PARAMETERS = 50
_SHOWN_BYTES = 200


def with_parameters(sql: str, bind: bytes) -> str:
    """`sql` followed by a comment with the values a Bind gives its parameters (what the
    approvers of a held execution see): text values quoted, binary ones in hex, long ones
    cut. A Bind that cannot be read: the text alone (the server will reject it)."""
    try:
        values, formats = P.parse_bind_parameters(bind)
    except E.ProtocolError:
        return sql
    if not values:
        return sql
    shown: list[str] = []
    for i, (value, fmt) in enumerate(zip(values, formats, strict=True)):
        if i == _SHOWN_PARAMETERS:
            shown.append(f"... {len(values) - i} more")
            break
        if value is None:
            text = "NULL"
        elif fmt == 1:
            text = "0x" + value[:_SHOWN_BYTES].hex() + " (binary)"
        else:
            raw = value[:_SHOWN_BYTES].decode("utf-8", "replace").replace("'", "''")
            text = "'" + raw + "'"
        if value is not None and len(value) > _SHOWN_BYTES:
            text += f" (first {_SHOWN_BYTES} of {len(value)} bytes)"
        shown.append(f"${i + 1} = {text}")
    lines = "".join(f"\n--   {line.replace(chr(10), ' ')}" for line in shown)
    return f"{sql}\n-- parameters:{lines}"


def _severity(decision: Decision) -> int:
    return {Action.ALLOW: 0, Action.HOLD: 1, Action.DENY: 2}[decision.action]
