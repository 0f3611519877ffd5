"""Audit log: JSON Lines records of connections, statements, policy reloads and holds.

Owns: the audit event vocabulary (events.py), the non-blocking log (log.py) and its sinks.
Must not: block the event loop, drop a record, or import proxy/session code.

Usage::

    audit = open_audit_log("/var/log/pgsentry/audit.jsonl")   # or "-" for stdout
    audit.emit(events.CONNECTION_OPEN, session_id=sid, client_addr=addr, tls=False)
    if audit.congested:          # before reading the next client statement
        await audit.drained()
    await audit.aclose()         # at shutdown, after every session has ended
"""

from pgsentry.audit import events
from pgsentry.audit.encode import format_ts, members, serialize, statement_line
from pgsentry.audit.log import (
    DEFAULT_HIGH_WATER,
    AuditLog,
    AuditLogClosedError,
    MemoryAuditLog,
    open_audit_log,
)
from pgsentry.audit.sinks import FileSink, MemorySink, Sink, StreamSink

__all__ = [
    "DEFAULT_HIGH_WATER",
    "AuditLog",
    "AuditLogClosedError",
    "FileSink",
    "MemoryAuditLog",
    "MemorySink",
    "Sink",
    "StreamSink",
    "events",
    "format_ts",
    "members",
    "open_audit_log",
    "serialize",
    "statement_line",
]
