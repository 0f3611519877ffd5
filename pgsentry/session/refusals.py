"""Refusals: the ErrorResponse a client gets for a statement pgsentry stops, and its marker.

Owns the refusal's text and SQLSTATE for each outcome (`refusal`, `refusal_for`) and the
per-session markers that carry it through the server (`new_marker`, `refuse_simple`): a
refused statement is replaced upstream by one that fails, named with a marker, and the
server's error naming it is swapped for the refusal on its way back (`responses.on_error`).
No I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgsentry.policy.decision import Action, Decision
from pgsentry.session.decider import Verdict
from pgsentry.wire import errors as E
from pgsentry.wire import protocol as P

if TYPE_CHECKING:
    from pgsentry.session.session import Session


def refusal(decision: Decision, outcome: str | None = None) -> bytes:
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


def refusal_for(verdict: Verdict) -> bytes:
    if verdict.decision.action is Action.ALLOW:
        return b""
    return refusal(verdict.decision)


def new_marker(session: Session, error: bytes) -> bytes:
    session._marker_seq += 1
    marker = f"pgsentry_refused_{session._marker_base}_{session._marker_seq}".encode()
    session._markers[marker] = (session._inflight.open_batch, error)
    return marker


def refuse_simple(session: Session, error: bytes) -> None:
    marker = new_marker(session, error)
    session.to_server.append(P.query("EXECUTE " + marker.decode()))
