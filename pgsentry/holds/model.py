"""Values of the holds package: a held statement, its state, approvals and outcome.

Owns `HoldState`, `Approval`, `HoldResult`, `Hold`, `Verdict` and the audit event names
the holds package emits. Must not do I/O or know about HTTP or sockets; `Hold` only keeps
an asyncio future that the registry resolves exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from pgsentry.audit import events
from pgsentry.policy.decision import HoldSpec, Principal

# Audit event names, from the audit vocabulary (short aliases for this package).
EV_HELD: Final = events.HOLD_HELD
EV_NOTIFIED: Final = events.HOLD_NOTIFIED
EV_NOTIFY_FAILED: Final = events.HOLD_NOTIFY_FAILED
EV_APPROVAL: Final = events.HOLD_APPROVAL
EV_DENIAL: Final = events.HOLD_DENIAL
EV_RELEASED: Final = events.HOLD_RELEASED
EV_EXPIRED: Final = events.HOLD_EXPIRED
EV_CANCELLED: Final = events.HOLD_CANCELLED
EV_ABANDONED: Final = events.HOLD_ABANDONED
EV_APPROVAL_REFUSED: Final = events.HOLD_APPROVAL_REFUSED


class HoldState(StrEnum):
    """WAITING until exactly one of the five final states."""

    WAITING = "waiting"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class Approval:
    """One approver's approval of one hold."""

    approver: str
    reason: str
    at: float  # wall-clock seconds since the epoch


@dataclass(frozen=True, slots=True)
class HoldResult:
    """How a hold ended. `approvers` are the approvers (APPROVED) or the denier (DENIED)."""

    outcome: HoldState
    approvers: tuple[str, ...] = ()
    reason: str = ""
    waited_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to an approve / deny / lookup: an HTTP status and the hold, if any.

    200 accepted, 403 approver not allowed, 404 unknown hold, 409 hold not waiting,
    statement text changed, or this approver already approved.
    """

    status: int
    error: str = ""
    hold: Hold | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


def statement_sha256(statement: str) -> str:
    """Hex SHA-256 of the statement text as UTF-8: what an approval is bound to."""
    return hashlib.sha256(statement.encode("utf-8")).hexdigest()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(eq=False, slots=True)
class Hold:
    """One held SQL batch. Created only by `HoldRegistry.create`; mutated only by it."""

    id: str
    statement: str
    statement_sha256: str
    analysis_summary: dict[str, object]
    principal: Principal
    session_id: str
    rule: str
    spec: HoldSpec
    message: str | None
    created_at: float  # wall clock (epoch seconds), for people and webhooks
    expires_at: float  # wall clock
    deadline: float  # registry clock (monotonic by default): when it expires
    started: float  # registry clock at creation
    future: asyncio.Future[HoldResult]
    state: HoldState = HoldState.WAITING
    approvals: list[Approval] = field(default_factory=list)
    result: HoldResult | None = None

    async def wait(self) -> HoldResult:
        """Wait until the hold ends. Cancelling the waiter does not end the hold:
        the session reports the client's cancel or disconnect with `HoldRegistry.cancel` /
        `HoldRegistry.abandon`."""
        return await asyncio.shield(self.future)

    @property
    def waiting(self) -> bool:
        return self.state is HoldState.WAITING

    def to_json(self) -> dict[str, object]:
        """The hold's state as the admin API and the CLI show it."""
        p = self.principal
        return {
            "id": self.id,
            "state": self.state.value,
            "rule": self.rule,
            "message": self.message,
            "statement": self.statement,
            "statement_sha256": self.statement_sha256,
            "analysis": self.analysis_summary,
            "user": p.user,
            "database": p.database,
            "application_name": p.application_name,
            "client_addr": p.client_addr,
            "in_transaction": p.in_transaction,
            "session_id": self.session_id,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "approvals_required": self.spec.approvals,
            "allowed_approvers": list(self.spec.approvers),
            "allowed_groups": list(self.spec.groups),
            "self_approval_allowed": self.spec.allow_self_approval,
            "approvals": [
                {"approver": a.approver, "reason": a.reason, "at": _iso(a.at)}
                for a in self.approvals
            ],
            "decided_by": list(self.result.approvers) if self.result else [],
            "reason": self.result.reason if self.result else "",
        }
