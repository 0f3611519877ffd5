"""In-flight statement records: match server responses to the statements that caused them.

Owns the FIFO of statements sent upstream and not yet answered, so each audit
"statement" record gets its command tag, row count, SQLSTATE and duration. Batches
are numbered: a simple Query, a FunctionCall or a Sync ends one, and every
ReadyForQuery closes the oldest. No I/O; the caller emits the finished records.

`Record`, `respond` (the per-response hot path), `query_known` (the simple protocol's
per-Query hot path) and `execute_batch` (the extended protocol's per-execution hot path)
have native twins in `_records.c`, built when a C compiler is there; `PyRecord` and the
``py_`` functions are the reference versions and behave the same
(tests/session/test_native_records.py).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pgsentry import metrics, native
from pgsentry.analysis.analyzer import MAX_CACHED_TEXT
from pgsentry.analysis.lexical import lexical_key
from pgsentry.audit.encode import json_value, members, statement_line
from pgsentry.policy.decision import Action
from pgsentry.session.decider import SessionDecider, Verdict, audit_tail
from pgsentry.wire import protocol as P
from pgsentry.wire.scan import scan

_F_QUERY = ord("Q")
_F_BIND = ord("B")
_F_EXECUTE = ord("E")
_F_SYNC = ord("S")
_F_COMMAND_COMPLETE = ord("C")
_F_READY_FOR_QUERY = ord("Z")
_ENDS_EXECUTE = (ord("I"), ord("s"))  # EmptyQueryResponse, PortalSuspended


class PyRecord:
    """One statement on its way: a Query, an Execute, or a FunctionCall."""

    __slots__ = (
        "batch",
        "effects",
        "hold_id",
        "portal",
        "protocol",
        "rows",
        "sqlstate",
        "started",
        "statement_name",
        "tags",
        "text",
        "verdict",
        "wall",
    )

    def __init__(
        self,
        protocol: str,
        text: str,
        verdict: Verdict,
        batch: int,
        statement_name: str | None = None,
        portal: str | None = None,
    ) -> None:
        self.protocol = protocol
        self.text = text
        self.verdict = verdict
        self.batch = batch
        self.statement_name = statement_name
        self.portal = portal
        self.started = time.perf_counter()
        self.wall = time.time()
        self.tags: list[str] = []
        self.rows: int | None = None
        self.sqlstate: str | None = None
        self.hold_id: str | None = None
        self.effects: tuple[tuple[str, str], ...] = ()  # session effects, applied on success

    def audit_line(self, head: bytes) -> bytes:
        """The finished statement's audit record (and its duration in the histogram).

        `head`: the session's ``session_id`` member (see `encode.members`).
        """
        duration = time.perf_counter() - self.started
        metrics.STATEMENT_DURATION.observe(duration)
        return self._line(head, duration)

    def _line(self, head: bytes, duration: float) -> bytes:
        """The audit line for a statement that took `duration` seconds."""
        tails = audit_tail(self.verdict)
        if self.statement_name is None and self.hold_id is None:
            tail = tails[0]
        else:
            tail = self._extra_members(tails)
        tags = self.tags
        return statement_line(
            self.wall,
            duration,
            head,
            _PROTOCOL_MEMBERS[self.protocol],
            self.text,
            None if not tags else tags[0] if len(tags) == 1 else "; ".join(tags),
            self.rows,
            self.sqlstate,
            tail,
        )

    def _extra_members(self, tails: tuple[bytes, bytes, bytes]) -> bytes:
        """The members after ``sqlstate`` in the documented order: decision, rule,
        statement_name, portal, would, would_rule, facts, hold_id."""
        out = tails[1] + _names_member(self.statement_name, self.portal) + tails[2]
        if self.hold_id is not None:
            out += _hold_member(self.hold_id)
        return out


def _names_member(statement_name: str | None, portal: str | None) -> bytes:
    """``,"statement_name":..,"portal":..`` (either may be left out), cached."""
    names = (statement_name, portal)
    between = _names_json.get(names)
    if between is None:
        fields: dict[str, object] = {}
        if statement_name is not None:
            fields["statement_name"] = statement_name
        if portal is not None:
            fields["portal"] = portal
        between = b"," + members(**fields) if fields else b""
        if len(_names_json) >= _NAMES_LIMIT:
            _names_json.clear()
        _names_json[names] = between
    return between


def _hold_member(hold_id: str) -> bytes:
    return b"," + members(hold_id=hold_id)


_PROTOCOL_MEMBERS = {
    protocol: b"," + members(protocol=protocol)
    for protocol in ("simple", "extended", "function_call")
}

# (statement name, portal) -> their audit members: the same few names recur per session.
_names_json: dict[tuple[str | None, str | None], bytes] = {}
_NAMES_LIMIT = 4096


class InFlight:
    """Statements sent upstream, oldest first, and the batch counters."""

    __slots__ = ("done_batches", "queue", "sent_batches")

    def __init__(self) -> None:
        self.queue: deque[Record] = deque()
        self.sent_batches = 0  # batches whose terminator (Q/F/Sync) went upstream
        self.done_batches = 0  # ReadyForQuery messages seen

    @property
    def open_batch(self) -> int:
        """Number of the batch that messages sent now belong to."""
        return self.sent_batches + 1

    def add_tag(self, tag: str) -> Record | None:
        """A CommandComplete. Returns the record it finishes (an Execute), if any."""
        q = self.queue
        if not q:
            return None
        head = q[0]
        head.tags.append(tag)
        last = tag.rpartition(" ")[2]  # 'INSERT 0 5' -> 5, 'SELECT 3' -> 3, 'CREATE TABLE'
        if last.isascii() and last.isdigit():
            head.rows = int(last) if head.rows is None else head.rows + int(last)
        if head.protocol == "extended":
            return q.popleft()
        return None

    def end_execute(self) -> Record | None:
        """EmptyQueryResponse or PortalSuspended end an Execute."""
        q = self.queue
        if q and q[0].protocol == "extended":
            return q.popleft()
        return None

    def error(self, sqlstate: str) -> Record | None:
        q = self.queue
        if not q:
            return None
        head = q[0]
        head.sqlstate = sqlstate
        if head.protocol == "extended":
            return q.popleft()
        return None


def py_respond(
    data: bytes,
    pos: int,
    table: bytes,
    inflight: InFlight,
    head: bytes,
    emit_line: Callable[[bytes], object],
    emit_record: Callable[[Record], object],
) -> tuple[int, bytes | None]:
    """Walk the whole server messages of `data` from `pos` and bookkeep the common ones.

    CommandComplete, ReadyForQuery, EmptyQueryResponse and PortalSuspended update
    `inflight` (`table`: which types to look at; the others are walked over). A finished
    record without session effects or a hold is audited here: its line (`head`: the
    session's member) goes to `emit_line`; any other finished record to `emit_record`.
    Stops at the first other inspected message, or an incomplete or malformed one.
    Returns where it stopped and the last ReadyForQuery status seen (None if none).
    Only for a session past authentication with no refusal markers pending.
    """
    n = len(data)
    status = None
    queue = inflight.queue
    while pos + 5 <= n:
        t = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 5], "big")
        end = pos + 1 + length
        if length < 4 or end > n:
            break
        if table[t]:
            if t == _F_COMMAND_COMPLETE:
                rec = inflight.add_tag(data[pos + 5 : end].rstrip(b"\0").decode("utf-8", "replace"))
                if rec is not None:
                    _finish(rec, head, emit_line, emit_record)
            elif t == _F_READY_FOR_QUERY:
                status = data[pos + 5 : min(pos + 6, end)]
                inflight.done_batches += 1
                done = inflight.done_batches
                while queue and queue[0].batch <= done:
                    _finish(queue.popleft(), head, emit_line, emit_record)
            elif t in _ENDS_EXECUTE:
                rec = inflight.end_execute()
                if rec is not None:
                    _finish(rec, head, emit_line, emit_record)
            else:
                break
        pos = end
    return pos, status


def _finish(
    rec: Record,
    head: bytes,
    emit_line: Callable[[bytes], object],
    emit_record: Callable[[Record], object],
) -> None:
    if rec.effects or rec.hold_id is not None:
        emit_record(rec)
    else:
        emit_line(rec.audit_line(head))


def py_query_known(
    msg: bytes,
    decider: SessionDecider,
    in_tx: bool,
    inflight: InFlight,
    to_server: list[bytes | memoryview] | None,
    counts: dict[tuple[str, ...], int],
) -> bool:
    """Forward a whole Query message whose text has a known lexical shape (the simple
    protocol's hot path): True when done, False (nothing done) for the general path.

    Done only when the text is ASCII with a lexical key, the decider's cache for `in_tx`
    belongs to the policy in force and maps the key to a verdict that is a plain ALLOW
    (`Verdict.plain_labels`, set by the decider when it keeps the verdict): then the record goes
    in flight, the message to `to_server`, and the verdict is counted in `counts`
    (pgsentry_statements_total's values). The same checks `SessionDecider.decide` makes
    before it answers from that cache.
    """
    if len(msg) < 6 or msg[0] != _F_QUERY or msg[-1] != 0 or len(msg) - 6 > MAX_CACHED_TEXT:
        return False
    caches = decider.by_lexical
    if caches is None or decider.generation != decider.holder.policy.generation:
        return False
    body = msg[5:-1]
    if not body.isascii():
        return False
    sql = body.decode("ascii")
    key = lexical_key(sql)
    verdict = None if key is None else caches[in_tx].get(key)
    if verdict is None or verdict.plain_labels is None:
        return False
    if verdict.decision.action is not Action.ALLOW:  # defence in depth: plain means ALLOW
        return False
    labels = verdict.plain_labels
    rec = Record("simple", sql, verdict, inflight.sent_batches + 1)
    inflight.queue.append(rec)
    inflight.sent_batches += 1
    if to_server is not None:  # None: the caller writes it (the native Lane)
        to_server.append(msg)
    counts[labels] = counts.get(labels, 0) + 1
    return True


def record_execute(
    msg: bytes,
    portals: dict[str, str],
    statements: dict[str, tuple[str, Verdict]],
    unknown: tuple[str, Verdict],
    inflight: InFlight,
    note_effects: Callable[[Record, str, Verdict], object],
) -> None:
    """A whole Execute message: the in-flight record of the statement behind its portal
    (see `py_execute_batch` for the arguments)."""
    portal = P.parse_execute_portal(msg)
    stmt = portals.get(portal, "")
    sql, verdict = statements.get(stmt, unknown)
    rec = Record("extended", sql, verdict, inflight.sent_batches + 1, stmt, portal)
    inflight.queue.append(rec)
    if verdict.plain_labels is None:
        note_effects(rec, sql, verdict)


def py_execute_batch(
    data: bytes,
    table: bytes,
    portals: dict[str, str],
    statements: dict[str, tuple[str, Verdict]],
    unknown: tuple[str, Verdict],
    inflight: InFlight,
    to_server: list[bytes | memoryview] | None,
    note_effects: Callable[[Record, str, Verdict], object],
) -> bool:
    """Bookkeep a chunk of whole Bind / Execute / Sync messages ending with its Sync (the
    execution of a prepared statement) and forward it whole: True when done, False
    (nothing done) for any other chunk, which the general path then takes.

    Declined when a Bind names a statement not in `statements` (name -> (text, verdict):
    the statements that run without judgement), or an Execute runs a portal not bound to
    one: the general path judges those at their Bind. A Bind maps its portal to its
    statement in `portals`; an Execute puts the record of the portal's statement in
    flight, and hands it to `note_effects` unless its verdict is plain
    (`Verdict.plain_labels`); a Sync ends a batch. Messages of other pass-through types
    (`table`) between them are forwarded with them; a name without its terminator gives
    False, so the general path reports it.
    """
    n = len(data)
    found: list[tuple[int, int, int]] = []
    pos = 0
    while pos < n:
        pos, t, length = scan(data, pos, table)
        if t < 0:
            return False  # incomplete, malformed, or pass-through messages at the end
        end = pos + 1 + length
        if end > n:
            return False
        if t == _F_BIND:
            portal_end = data.find(b"\0", pos + 5, end)
            if portal_end < 0 or data.find(b"\0", portal_end + 1, end) < 0:
                return False
        elif t == _F_EXECUTE:
            if data.find(b"\0", pos + 5, end) < 0:
                return False
        elif t != _F_SYNC:
            return False
        found.append((t, pos, end))
        pos = end
    if not found or found[-1][0] != _F_SYNC or found[-1][2] != n:
        return False
    bound: set[str] = set()
    for t, start, end in found:
        if t == _F_BIND:
            portal, stmt = P.parse_bind_names(data[start:end])
            bound.add(portal)
        elif t == _F_EXECUTE:
            portal = P.parse_execute_portal(data[start:end])
            if portal in bound:
                continue
            known = portals.get(portal)
            if known is None:
                return False
            stmt = known
        else:
            continue
        if stmt not in statements:
            return False  # judged at its Bind, or not known: the general path
    for t, start, end in found:
        if t == _F_BIND:
            portal, stmt = P.parse_bind_names(data[start:end])
            portals[portal] = stmt
        elif t == _F_EXECUTE:
            record_execute(data[start:end], portals, statements, unknown, inflight, note_effects)
        else:
            inflight.sent_batches += 1
    if to_server is not None:
        to_server.append(data)
    return True


_native = native.load("pgsentry.session._records")
if _native is not None:
    _native._setup(
        audit_tail,
        _names_member,
        _names_json,
        _hold_member,
        json_value,
        _PROTOCOL_MEMBERS,
        metrics.STATEMENT_DURATION,
        lexical_key,
        MAX_CACHED_TEXT,
        Action.ALLOW,
    )
NATIVE = _native is not None
#: The native Lane type and its one-time setup (session.py), None without the extension:
#: the Lane has no Python twin, the connection's own Python path is its reference.
Lane: Any = None if _native is None else _native.Lane
lane_setup: Any = None if _native is None else _native._lane_setup
if TYPE_CHECKING:
    Record = PyRecord
    respond = py_respond
    query_known = py_query_known
    execute_batch = py_execute_batch
else:
    Record = PyRecord if _native is None else _native.Record
    respond = py_respond if _native is None else _native.respond
    query_known = py_query_known if _native is None else _native.query_known
    execute_batch = py_execute_batch if _native is None else _native.execute_batch
