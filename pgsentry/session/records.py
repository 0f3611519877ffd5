"""In-flight statement records: match server responses to the statements that caused them.

Owns the FIFO of statements sent upstream and not yet answered, so each audit
"statement" record gets its command tag, row count, SQLSTATE and duration. Batches
are numbered: a simple Query, a FunctionCall or a Sync ends one, and every
ReadyForQuery closes the oldest. No I/O; the caller emits the finished records.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from pgsentry import metrics
from pgsentry.policy.decision import Decision


class Record:
    """One statement on its way: a Query, an Execute, or a FunctionCall."""

    __slots__ = (
        "batch",
        "decision",
        "effects",
        "facts",
        "finished",
        "hold_id",
        "portal",
        "protocol",
        "rows",
        "session_id",
        "sqlstate",
        "started",
        "statement_name",
        "tags",
        "text",
        "wall",
    )

    def __init__(
        self,
        protocol: str,
        text: str,
        decision: Decision,
        facts: list[dict[str, Any]] | None,
        batch: int,
        statement_name: str | None = None,
        portal: str | None = None,
    ) -> None:
        self.protocol = protocol
        self.text = text
        self.decision = decision
        self.facts = facts
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
        self.finished = 0.0
        self.session_id = ""

    def finish(self, session_id: str) -> Record:
        """Stamp the end time; the record is then handed to the audit writer as it is."""
        self.finished = time.perf_counter()
        self.session_id = session_id
        return self

    def audit_fields(self) -> dict[str, object]:
        """The audit "statement" record (built on the audit writer thread, which also
        feeds the statement duration histogram)."""
        d = self.decision
        duration = self.finished - self.started
        metrics.STATEMENT_DURATION.observe(duration)  # here: off the event loop
        out: dict[str, object] = {
            "session_id": self.session_id,
            "protocol": self.protocol,
            "text": self.text,
            "started_at": self.wall,
            "duration_ms": round(duration * 1000, 3),
            "command_tag": "; ".join(self.tags) if self.tags else None,
            "rows": self.rows,
            "sqlstate": self.sqlstate,
            "decision": d.action.value,
            "rule": d.rule,
        }
        if self.statement_name is not None:
            out["statement_name"] = self.statement_name
        if self.portal is not None:
            out["portal"] = self.portal
        if d.would is not None:
            out["would"] = d.would.value
        if self.facts is not None:
            out["facts"] = self.facts
        if self.hold_id is not None:
            out["hold_id"] = self.hold_id
        return out


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

    def add_tag(self, tag: str, rows: int | None) -> Record | None:
        """A CommandComplete. Returns the record it finishes (an Execute), if any."""
        q = self.queue
        if not q:
            return None
        head = q[0]
        head.tags.append(tag)
        if rows is not None:
            head.rows = rows if head.rows is None else head.rows + rows
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

    def ready(self) -> list[Record]:
        """A ReadyForQuery: close the oldest batch; return its unfinished records."""
        self.done_batches += 1
        done = self.done_batches
        out: list[Record] = []
        q = self.queue
        while q and q[0].batch <= done:
            out.append(q.popleft())
        return out
