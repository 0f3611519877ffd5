"""Audit event names and the fields each one carries.

Owns: the vocabulary of the audit log (one constant per event type) and its documentation.
Must not: do I/O or import anything from pgsentry; emitters import these names, not the reverse.

Every record is one JSON object on one line (JSON Lines, UTF-8). Two keys are always present and
always come first; emitters cannot override them:

- ``ts``: when ``emit()`` was called, RFC 3339 UTC with microseconds,
  e.g. ``"2024-05-01T12:00:00.123456Z"``.
- ``event``: one of the names below.

All other keys are the fields the emitter passed. A field is ``null`` when not known (for example
``sqlstate`` on success). Values JSON has no type for are converted, never refused: datetimes to
ISO 8601, enums to their value, bytes to base64, sets to sorted lists, tuples to lists,
dataclasses and pydantic models to objects, anything else to ``str()``.

Connection events (pgsentry.proxy / pgsentry.session)
----------------------------------------------------
``connection_open``
    ``session_id`` (str, unique per connection), ``client_addr`` (str), ``client_port`` (int).
``connection_tls``
    ``session_id``, ``client`` (bool: the client leg uses TLS), ``upstream`` (bool: the leg to
    PostgreSQL uses TLS). Emitted once the upstream connection is set up.
``connection_auth``
    ``session_id``, ``user``, ``database``, ``application_name`` (str or null),
    ``outcome`` (``"ok"`` | ``"failed"``); on failure also ``sqlstate`` and ``message``
    (PostgreSQL's own error, e.g. ``28P01``).
``connection_close``
    ``session_id``, ``duration_ms`` (float), ``bytes_from_client``, ``bytes_from_server`` (int),
    ``reason`` (str, e.g. ``"client terminated"``, ``"server ended the session"``,
    ``"upstream closed"``, ``"protocol error"``, ``"cancel request"``).

Statement events (pgsentry.session)
-----------------------------------
``statement``, one per Query, per Execute of a portal, and per FunctionCall, written when the
statement finishes (CommandComplete, ErrorResponse or its refusal):
    ``session_id``; ``protocol`` (``"simple"`` | ``"extended"`` | ``"function_call"``);
    ``text`` (Query text, or the Parse text behind the portal); ``started_at`` (Unix time in
    seconds, microsecond precision); ``duration_ms`` (until CommandComplete/ErrorResponse);
    ``command_tag`` (e.g. ``"DELETE 3"``; tags of a multi-statement Query joined with ``"; "``;
    null if none);
    ``rows`` (int or null); ``sqlstate`` (null on success; ``42501`` for a refusal);
    ``decision`` (``"allow"`` | ``"deny"`` | ``"hold"``); ``rule`` (id of the deciding rule, or
    ``"default"``). Present only when they apply: ``statement_name`` and ``portal`` (extended
    protocol, ``""`` = unnamed), ``would`` and ``would_rule`` (shadow mode: the action that
    would have been enforced, and the rule that would have decided), ``facts`` (list of
    objects: ``kind``, ``relations``, ``where``, ``origin``, ``cascade``, ``dynamic_sql``,
    ``functions``), ``hold_id`` (the statement ran after approval).
``statement`` with ``phase: "parse"``, one per Parse message when it is decided:
    ``session_id``, ``protocol: "extended"``, ``statement_name``, ``text``, ``decision``,
    ``would``, ``would_rule``, ``rule``, ``facts``. (No timing: nothing has run yet.)

Proxy-wide events (pgsentry.app / pgsentry.proxy)
-------------------------------------------------
``policy_reload``
    ``result`` (``"success"`` | ``"failure"``); ``generation`` (int, on success) or ``error``
    (str, on failure).
``protocol_error``
    ``session_id``, ``side`` (``"client"`` | ``"server"``), ``detail`` (str).

Hold events (pgsentry.holds, pgsentry.admin.webhooks, pgsentry.session)
------------------------------------------------------------------------
All carry ``hold_id`` and ``session_id``.

``hold_held``
    ``rule``, ``user``, ``database``, ``application_name``, ``client_addr``, ``statement``,
    ``statement_sha256``, ``timeout_seconds``, ``approvals_required``.
``hold_notified`` / ``hold_notify_failed``
    ``webhook`` (target name), ``attempt``, ``status`` (HTTP status or null), ``webhook_id``;
    failures also ``error`` and ``final`` (bool: no more retries).
``hold_approval``
    ``approver``, ``reason``, ``approvals`` (so far), ``approvals_required``.
``hold_released`` / ``hold_denial`` / ``hold_expired`` / ``hold_cancelled`` / ``hold_abandoned``
    The hold's outcome: ``rule``, ``approvers`` (list), ``reason``, ``waited_seconds``.
``hold_approval_refused`` (pgsentry.admin: an approve / deny request the API refused)
    ``hold_id`` (null when no such hold), ``session_id`` (null likewise), ``requested_id``
    (the id asked for, at most 128 characters), ``action`` (``"approve"`` | ``"deny"``),
    ``status`` (HTTP status: 400, 401, 403, 404, 409), ``reason`` (the error answered),
    ``approver`` (null unless the bearer token was valid), ``client_addr``. Never the token.
``hold_executed``
    The released statement ran: ``command_tag``, ``sqlstate``, ``outcome`` (``"ok"`` | ``"error"``).
"""

from typing import Final

CONNECTION_OPEN: Final = "connection_open"
CONNECTION_TLS: Final = "connection_tls"
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
HOLD_APPROVAL_REFUSED: Final = "hold_approval_refused"

#: The two keys every record starts with; emitters' fields cannot replace them.
RESERVED_FIELDS: Final = frozenset({"ts", "event"})

#: Every event name this release emits (the log itself accepts any name).
ALL_EVENTS: Final = frozenset(
    {
        CONNECTION_OPEN,
        CONNECTION_TLS,
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
        HOLD_APPROVAL_REFUSED,
    }
)
