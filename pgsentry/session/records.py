"""In-flight statement records: match server responses to the statements that caused them.

Owns the FIFO of statements sent upstream and not yet answered, so each audit
"statement" record gets its command tag, row count, SQLSTATE and duration. Batches
are numbered: a simple Query, a FunctionCall or a Sync ends one, and every
ReadyForQuery closes the oldest. No I/O; the caller emits the finished records.
"""

from __future__ import annotations

import time
from collections import deque

from pgsentry import metrics
from pgsentry.audit.encode import members, statement_line
from pgsentry.session.decider import Verdict, audit_tail


class Record:
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
        statement_name, portal, would, facts, hold_id."""
        names = (self.statement_name, self.portal)
        between = _names_json.get(names)
        if between is None:
            fields: dict[str, object] = {}
            if self.statement_name is not None:
                fields["statement_name"] = self.statement_name
            if self.portal is not None:
                fields["portal"] = self.portal
            between = b"," + members(**fields) if fields else b""
            if len(_names_json) >= _NAMES_LIMIT:
                _names_json.clear()
            _names_json[names] = between
        out = tails[1] + between + tails[2]
        if self.hold_id is not None:
            out += b"," + members(hold_id=self.hold_id)
        return out


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
        if last.isdigit():
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
