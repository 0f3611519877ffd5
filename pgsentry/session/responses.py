"""Server -> client: the messages a session watches on their way back, the rest forwarded.

Owns `server_data` (bound as `Session.server_data`) and what it does with each message it
inspects (`SERVER_INSPECT`): ReadyForQuery closes the oldest batch and sets the transaction
status, CommandComplete / ErrorResponse / EmptyQueryResponse / PortalSuspended finish the
in-flight records (`emit`, bound as `Session._emit`: the audit record), an ErrorResponse
naming a refusal marker is swapped for the refusal, ParameterStatus updates what judging
reads (standard_conforming_strings, client_encoding, application_name), BackendKeyData is
rewritten to the proxy's key. Authentication goes to `auth`. No I/O: output goes to
`to_client`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgsentry.analysis.encodings import python_codec, safe_client_encoding
from pgsentry.audit.encode import members
from pgsentry.session.auth import audit_auth, on_authentication
from pgsentry.session.judging import effects_confirmed
from pgsentry.session.records import Record, respond
from pgsentry.session.state import Phase
from pgsentry.wire import errors as E
from pgsentry.wire import protocol as P
from pgsentry.wire.scan import type_table

if TYPE_CHECKING:
    from pgsentry.session.session import Session

_unpack_len = P.UINT32.unpack_from

SERVER_INSPECT = frozenset(b"RKSZCEvIs")
SERVER_TABLE = type_table(P.BACKEND_TYPES, SERVER_INSPECT)
_B_PARAMETER_STATUS = P.B_PARAMETER_STATUS


def server_data(session: Session, data: bytes, done: int | None = None) -> None:
    """Server bytes: watch the messages that matter, forward everything else as is.

    In the common case nothing is rewritten and no message straddles the chunk, so
    the chunk itself is forwarded: one write, no copy. `done` is given by the Lane when
    it has already passed `respond` over the chunk (aligned, READY, no markers) and
    that took the first `done` bytes.
    """
    session.bytes_from_server += len(data)
    walker = session._server
    aligned = walker.at_boundary
    assert done is None or (aligned and session.phase is Phase.READY and not session._markers)
    if aligned:
        if done is None and session.phase is Phase.READY and not session._markers:
            # The whole messages at the start that need no rewriting (every response's
            # CommandComplete and ReadyForQuery): `respond`, native when built.
            done, status = respond(
                data,
                0,
                SERVER_TABLE,
                session._inflight,
                session._audit_head or new_audit_head(session),
                session.audit.emit_line,
                session._emit,
            )
            if status is not None:
                session.status = status
        if done is None:
            done = 0  # authenticating, or markers to rewrite: the walker does it all
        elif done + 5 <= len(data) and data[done] == _B_PARAMETER_STATUS:
            done = _server_whole_messages(session, data, done)
        if done == len(data):
            session.to_client.append(data)
            return
        if done:
            session.to_client.append(data[:done])
            data = data[done:]
    items = walker.feed(data)
    replaced: dict[int, bytes] | None = None
    for i, item in enumerate(items):
        if not isinstance(item, tuple):
            continue
        t, msg = item
        if t == P.B_READY_FOR_QUERY:
            on_ready(session, msg[5:6])
            continue
        if t == P.B_COMMAND_COMPLETE:
            rec = session._inflight.add_tag(P.parse_command_tag(msg[5:]))
            if rec is not None:
                emit(session, rec)
            continue
        if t == P.B_ERROR_RESPONSE:
            new = on_error(session, msg)
        elif t == P.B_EMPTY_QUERY or t == P.B_PORTAL_SUSPENDED:
            rec = session._inflight.end_execute()
            if rec is not None:
                emit(session, rec)
            continue
        elif t == P.B_PARAMETER_STATUS:
            on_parameter_status(session, msg)
            continue
        elif t == P.B_AUTHENTICATION:
            new = on_authentication(session, msg)
        elif t == P.B_BACKEND_KEY_DATA:
            if len(msg) == 13:
                session.upstream_key = (
                    P.UINT32.unpack_from(msg, 5)[0],
                    P.UINT32.unpack_from(msg, 9)[0],
                )
                # the server's process ID, the proxy's secret (see Proxy.new_session)
                session.proxy_key = (session.upstream_key[0], session.proxy_key[1])
            new = P.backend_key_data(*session.proxy_key)
        elif t == P.B_NEGOTIATE_PROTOCOL_VERSION:
            new = b""  # we asked for 3.0 only; the client got our own negotiation
        else:
            continue
        if new is not msg:
            if replaced is None:
                replaced = {}
            replaced[i] = new
    if replaced is None and aligned and walker.at_boundary:
        session.to_client.append(data)
        return
    out = session.to_client
    for i, item in enumerate(items):
        if isinstance(item, tuple):
            out.append(replaced[i] if replaced and i in replaced else item[1])
        else:
            out.append(item)


def _server_whole_messages(session: Session, data: bytes, pos: int) -> int:
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
        on_parameter_status(session, data[pos:end])
        pos, status = respond(
            data,
            end,
            SERVER_TABLE,
            session._inflight,
            session._audit_head,
            session.audit.emit_line,
            session._emit,
        )
        if status is not None:
            session.status = status
    return pos


def new_audit_head(session: Session) -> bytes:
    """The session_id member of this session's audit records (built at the first one)."""
    session._audit_head = members(session_id=session.session_id)
    return session._audit_head


def on_ready(session: Session, status: bytes) -> None:
    """A ReadyForQuery (its body: the transaction status): close the oldest batch."""
    session.status = status
    if session.phase is Phase.AUTHENTICATING:
        session.phase = Phase.READY
        audit_auth(session, "ok")
        return
    inflight = session._inflight
    inflight.done_batches += 1
    done = inflight.done_batches
    queue = inflight.queue
    while queue and queue[0].batch <= done:
        emit(session, queue.popleft())
    if session._markers:
        for marker, (batch, _) in list(session._markers.items()):
            if batch <= done:
                del session._markers[marker]


def on_error(session: Session, msg: bytes) -> bytes:
    for marker, (_, refusal) in session._markers.items():
        if marker in msg:
            del session._markers[marker]
            msg = refusal
            break
    fields = E.parse_error_fields(msg[5:])
    sqlstate = fields.get("C", "")
    if fields.get("V", fields.get("S")) in ("FATAL", "PANIC"):
        session.server_fatal = True
    if session.phase is Phase.AUTHENTICATING:
        audit_auth(session, "failed", sqlstate=sqlstate, message=fields.get("M"))
        return msg
    rec = session._inflight.error(sqlstate)
    if rec is not None:
        emit(session, rec)
    return msg


def emit(session: Session, rec: Record) -> None:
    """A finished record: its audit line, and its session effects now they took place."""
    if rec.effects and rec.sqlstate is None:
        effects_confirmed(session, rec.text, rec.effects, rec.verdict.analysis)
    session.audit.emit_line(rec.audit_line(session._audit_head or new_audit_head(session)))
    if rec.hold_id is not None:
        session.audit.emit(
            "hold_executed",
            hold_id=rec.hold_id,
            session_id=session.session_id,
            command_tag="; ".join(rec.tags) or None,
            sqlstate=rec.sqlstate,
            outcome="error" if rec.sqlstate else "ok",
        )


def on_parameter_status(session: Session, msg: bytes) -> None:
    name, value = P.parse_parameter_status(msg[5:])
    if name == "standard_conforming_strings":
        session.scs = value == "on"
    elif name == "client_encoding":
        safe = safe_client_encoding(value)
        session._foreign_encoding = None if safe else value
        session._codec = python_codec(value) if safe else None
    elif name == "application_name" and value != session.application_name:
        session.application_name = value
        session._rebuild_principal()
        session.decider.reset()
