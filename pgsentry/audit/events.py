"""Audit event names and the fields each one carries.

Owns: the vocabulary of the audit log (one constant per event type) and its documentation.
Must not: do I/O or import anything from pgsentry; emitters import these names, not the reverse.

Every record is one JSON object on one line (JSON Lines, UTF-8). Two keys are always present and
always come first; emitters cannot override them:

- ``ts``: when ``emit()`` was called, RFC 3339 UTC with microseconds,
  e.g. ``"2024-05-01T12:00:00.123456Z"``.
- ``event``: one of the names below.

All other keys are the fields the emitter passed. A field is ``null`` when not known (for example
``sqlstate`` on success). Values that JSON cannot represent (datetimes, enums, bytes, sets...) are
written as their ``str()`` (or a list, for sets/tuples); the writer never fails on a value.

Connection events (emitted by the proxy session)
------------------------------------------------
``connection_open``
    ``session_id`` (str), ``client_addr`` (str), ``client_port`` (int), ``tls`` (bool).
``connection_auth``
    ``session_id``, ``user``, ``database``, ``application_name`` (str or null),
    ``outcome`` (``"ok"`` | ``"failed"``), ``sqlstate`` (str or null: PostgreSQL's code when the
    login failed).
``connection_close``
    ``session_id``, ``duration_ms`` (float), ``bytes_from_client`` (int), ``bytes_from_server``
    (int), ``reason`` (str: e.g. ``"client_terminate"``, ``"client_eof"``, ``"upstream_eof"``,
    ``"protocol_error"``, ``"shutdown"``).

Statement events (emitted by the proxy session)
-----------------------------------------------
``statement``
    ``session_id``, ``protocol`` (``"simple"`` | ``"extended"``), ``text`` (the Query or Parse
    SQL text), ``statement_name`` (Parse/Bind prepared statement name, ``""`` = unnamed; null for
    simple protocol), ``portal`` (Bind/Execute portal name or null), ``started_at`` (RFC 3339,
    when the statement was sent upstream or decided), ``duration_ms`` (until CommandComplete or
    ErrorResponse), ``command_tag`` (e.g. ``"SELECT 3"``, or null), ``rows`` (int or null),
    ``sqlstate`` (null on success), ``decision`` (``"allow"`` | ``"deny"`` | ``"hold"``),
    ``would`` (in shadow mode: the decision that would have been enforced, else null),
    ``rule`` (id of the policy rule that decided, or null), ``facts`` (list of str: the analysis
    facts the decision was based on).

Proxy-wide events
-----------------
``policy_reload``
    ``generation`` (int), ``result`` (``"ok"`` | ``"error"``), ``error`` (str or null).
``protocol_error``
    ``session_id``, ``side`` (``"client"`` | ``"server"``), ``detail`` (str).

Hold events (emitted by the holds package; all carry ``hold_id`` and ``session_id``)
--------------------------------------------------------------------------------------
``hold_held``, ``hold_notified``, ``hold_notify_failed``, ``hold_approval``, ``hold_denial``,
``hold_released``, ``hold_executed``, ``hold_expired``, ``hold_cancelled``, ``hold_abandoned``.
Their other fields are documented by ``pgsentry.holds``.
"""

from typing import Final

CONNECTION_OPEN: Final = "connection_open"
CONNECTION_AUTH: Final = "connection_auth"
CONNECTION_CLOSE: Final = "connection_close"
STATEMENT: Final = "statement"
POLICY_RELOAD: Final = "policy_reload"
PROTOCOL_ERROR: Final = "protocol_error"

HOLD_HELD: Final = "hold_held"
HOLD_NOTIFIED: Final = "hold_notified"
HOLD_NOTIFY_FAILED: Final = "hold_notify_failed"
HOLD_APPROVAL: Final = "hold_approval"
HOLD_DENIAL: Final = "hold_denial"
HOLD_RELEASED: Final = "hold_released"
HOLD_EXECUTED: Final = "hold_executed"
HOLD_EXPIRED: Final = "hold_expired"
HOLD_CANCELLED: Final = "hold_cancelled"
HOLD_ABANDONED: Final = "hold_abandoned"

#: The two keys every record starts with; emitters' fields cannot replace them.
RESERVED_FIELDS: Final = frozenset({"ts", "event"})

#: Every event name this release emits (the log itself accepts any name).
ALL_EVENTS: Final = frozenset(
    {
        CONNECTION_OPEN,
        CONNECTION_AUTH,
        CONNECTION_CLOSE,
        STATEMENT,
        POLICY_RELOAD,
        PROTOCOL_ERROR,
        HOLD_HELD,
        HOLD_NOTIFIED,
        HOLD_NOTIFY_FAILED,
        HOLD_APPROVAL,
        HOLD_DENIAL,
        HOLD_RELEASED,
        HOLD_EXECUTED,
        HOLD_EXPIRED,
        HOLD_CANCELLED,
        HOLD_ABANDONED,
    }
)
