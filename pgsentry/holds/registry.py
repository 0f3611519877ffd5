"""The hold registry: held batches waiting for approval, their approvals and expiry.

Owns creating holds, the approval rules (N distinct approvals, allowed approvers/groups,
self-approval), expiry, cancel/abandon, the hold metrics and the hold audit events.
Must not import `pgsentry.proxy` or `pgsentry.admin`, do socket I/O or block: every
method is synchronous and runs on the event loop thread (the admin app and the proxy share
one loop), so no locking is needed and an approval and an expiry can never interleave.

Expiry: one heap of deadlines and a single loop timer armed for the earliest one, so
ten thousand waiting holds cost one TimerHandle. Deadlines are read from the injected
`clock` (monotonic by default); when the timer fires, every hold whose deadline is past
on `clock()` expires. Tests with a fake clock advance it and call `expire_due()`.

Decided holds stay known (for `GET /v1/holds/{id}` and a clear 409 to late approvals)
until `retain_decided` newer decided holds have pushed them out.
"""

from __future__ import annotations

import asyncio
import heapq
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from pgsentry import metrics
from pgsentry.holds.approvers import Approver, ApproverStore
from pgsentry.holds.model import (
    EV_ABANDONED,
    EV_APPROVAL,
    EV_APPROVAL_REFUSED,
    EV_CANCELLED,
    EV_DENIAL,
    EV_EXPIRED,
    EV_HELD,
    EV_RELEASED,
    Approval,
    Hold,
    HoldResult,
    HoldState,
    Verdict,
    statement_sha256,
)
from pgsentry.policy.decision import HoldSpec, Principal


class AuditEmitter(Protocol):
    """What the holds package needs from pgsentry.audit.AuditLog (non-blocking emit)."""

    def emit(self, event: str, /, **fields: object) -> None: ...


class HoldNotifier(Protocol):
    """Told about each new hold; must return at once (deliveries run in the background)."""

    def notify(self, hold: Hold) -> None: ...


class HoldLimitExceeded(RuntimeError):
    """Too many holds are waiting already; the caller should refuse the statement."""


_OUTCOME_EVENTS = {
    HoldState.APPROVED: EV_RELEASED,
    HoldState.DENIED: EV_DENIAL,
    HoldState.EXPIRED: EV_EXPIRED,
    HoldState.CANCELLED: EV_CANCELLED,
    HoldState.ABANDONED: EV_ABANDONED,
}


class HoldRegistry:
    def __init__(
        self,
        *,
        audit: AuditEmitter,
        notifier: HoldNotifier | None = None,
        approvers: ApproverStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_waiting: int = 10_000,
        retain_decided: int = 10_000,
    ) -> None:
        self._audit = audit
        self.notifier = notifier
        self._approvers = approvers
        self._clock = clock
        self._wall = wall_clock
        self._max_waiting = max_waiting
        self._retain = retain_decided
        self._waiting: dict[str, Hold] = {}
        self._decided: OrderedDict[str, Hold] = OrderedDict()
        self._heap: list[tuple[float, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    # --- lookup ----------------------------------------------------------------------

    def get(self, hold_id: str) -> Hold | None:
        return self._waiting.get(hold_id) or self._decided.get(hold_id)

    def waiting(self) -> list[Hold]:
        return list(self._waiting.values())

    def recent(self) -> list[Hold]:
        """Waiting holds, then retained decided holds (newest decided last)."""
        return [*self._waiting.values(), *self._decided.values()]

    # --- the session's side ------------------------------------------------------------

    def create(
        self,
        *,
        statement: str,
        analysis_summary: dict[str, object],
        principal: Principal,
        session_id: str,
        rule: str,
        spec: HoldSpec,
        message: str | None = None,
    ) -> Hold:
        """Hold `statement` (must be called on the running loop). Raises HoldLimitExceeded."""
        if len(self._waiting) >= self._max_waiting:
            raise HoldLimitExceeded(f"{len(self._waiting)} holds are waiting already")
        loop = asyncio.get_running_loop()
        now, wall = self._clock(), self._wall()
        timeout = max(0.0, spec.timeout_seconds)
        hold = Hold(
            id="h_" + secrets.token_urlsafe(18),
            statement=statement,
            statement_sha256=statement_sha256(statement),
            analysis_summary=analysis_summary,
            principal=principal,
            session_id=session_id,
            rule=rule,
            spec=spec,
            message=message,
            created_at=wall,
            expires_at=wall + timeout,
            deadline=now + timeout,
            started=now,
            future=loop.create_future(),
        )
        self._waiting[hold.id] = hold
        heapq.heappush(self._heap, (hold.deadline, hold.id))
        self._arm(loop)
        metrics.HOLDS_WAITING.inc()
        metrics.HOLDS_CREATED.labels(rule).inc()
        self._audit.emit(
            EV_HELD,
            hold_id=hold.id,
            session_id=session_id,
            rule=rule,
            user=principal.user,
            database=principal.database,
            application_name=principal.application_name,
            client_addr=principal.client_addr,
            statement=statement,
            statement_sha256=hold.statement_sha256,
            timeout_seconds=timeout,
            approvals_required=spec.approvals,
        )
        if self.notifier is not None:
            self.notifier.notify(hold)
        return hold

    def cancel(self, hold_id: str) -> bool:
        """The client sent a CancelRequest. False if the hold was not waiting."""
        return self._finish(hold_id, HoldState.CANCELLED)

    def abandon(self, hold_id: str) -> bool:
        """The client disconnected. False if the hold was not waiting."""
        return self._finish(hold_id, HoldState.ABANDONED)

    # --- the approvers' side -----------------------------------------------------------

    def approve(
        self,
        hold_id: str,
        approver: Approver | str,
        reason: str = "",
        statement_sha256: str | None = None,
    ) -> Verdict:
        """Record one approval; releases the hold when enough distinct approvers agreed."""
        hold, who, verdict = self._check(hold_id, approver, statement_sha256)
        if verdict is not None:
            return verdict
        assert hold is not None and who is not None
        if not hold.spec.allow_self_approval and who.is_requester(hold.principal.user):
            return Verdict(403, f"{who.name} may not approve their own statement", hold)
        if any(a.approver == who.name for a in hold.approvals):
            return Verdict(409, f"{who.name} has approved this hold already", hold)
        hold.approvals.append(Approval(who.name, reason, self._wall()))
        self._audit.emit(
            EV_APPROVAL,
            hold_id=hold.id,
            session_id=hold.session_id,
            approver=who.name,
            reason=reason,
            approvals=len(hold.approvals),
            approvals_required=hold.spec.approvals,
        )
        if len(hold.approvals) >= hold.spec.approvals:
            names = tuple(a.approver for a in hold.approvals)
            self._finish(hold.id, HoldState.APPROVED, names, reason)
        return Verdict(200, "", hold)

    def deny(
        self,
        hold_id: str,
        approver: Approver | str,
        reason: str = "",
        statement_sha256: str | None = None,
    ) -> Verdict:
        """Deny the hold at once. Any allowed approver may deny, the requester included."""
        hold, who, verdict = self._check(hold_id, approver, statement_sha256)
        if verdict is not None:
            return verdict
        assert hold is not None and who is not None
        self._finish(hold.id, HoldState.DENIED, (who.name,), reason)
        return Verdict(200, "", hold)

    def record_refusal(
        self,
        hold_id: str,
        *,
        action: str,
        status: int,
        reason: str,
        approver: str | None,
        client_addr: str | None,
    ) -> None:
        """Audit an approve / deny request that was refused (bad or missing token, approver
        not allowed, replay, unknown hold...). The caller never passes the token."""
        hold = self.get(hold_id)
        self._audit.emit(
            EV_APPROVAL_REFUSED,
            hold_id=hold.id if hold is not None else None,
            session_id=hold.session_id if hold is not None else None,
            requested_id=hold_id[:128],
            action=action,
            status=status,
            reason=reason,
            approver=approver,
            client_addr=client_addr,
        )

    def _check(
        self, hold_id: str, approver: Approver | str, sha256: str | None
    ) -> tuple[Hold | None, Approver | None, Verdict | None]:
        hold = self.get(hold_id)
        if hold is None:
            return None, None, Verdict(404, "no such hold")
        who = approver
        if isinstance(who, str):
            found = self._approvers.get(who) if self._approvers is not None else None
            if found is None:
                return hold, None, Verdict(403, f"unknown approver {who!r}", hold)
            who = found
        if sha256 is not None and sha256.lower() != hold.statement_sha256:
            return hold, who, Verdict(409, "statement_sha256 does not match the held text", hold)
        if not hold.waiting:
            return hold, who, Verdict(409, f"hold is {hold.state.value}", hold)
        spec = hold.spec
        if (spec.approvers or spec.groups) and not (
            who.name in spec.approvers or set(who.groups) & set(spec.groups)
        ):
            return hold, who, Verdict(403, f"{who.name} may not decide holds of this rule", hold)
        return hold, who, None

    # --- expiry --------------------------------------------------------------------------

    def expire_due(self) -> int:
        """Expire every waiting hold whose deadline has passed on the clock; re-arm."""
        now = self._clock()
        count = 0
        while self._heap and self._heap[0][0] <= now:
            _, hold_id = heapq.heappop(self._heap)
            if self._finish(hold_id, HoldState.EXPIRED):
                count += 1
        self._timer_at = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._arm(None)
        return count

    def _arm(self, loop: asyncio.AbstractEventLoop | None) -> None:
        while self._heap and self._heap[0][1] not in self._waiting:
            heapq.heappop(self._heap)  # lazily drop holds that ended otherwise
        if not self._heap:
            return
        deadline = self._heap[0][0]
        if self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = loop or asyncio.get_running_loop()
        delay = max(0.0, deadline - self._clock())
        self._timer = loop.call_later(delay, self.expire_due)
        self._timer_at = deadline

    def close(self) -> None:
        """Abandon every waiting hold and stop the timer (process shutdown)."""
        for hold_id in list(self._waiting):
            self._finish(hold_id, HoldState.ABANDONED, reason="pgsentry shutting down")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- the one place a hold ends -------------------------------------------------------

    def _finish(
        self,
        hold_id: str,
        outcome: HoldState,
        approvers: tuple[str, ...] = (),
        reason: str = "",
    ) -> bool:
        hold = self._waiting.pop(hold_id, None)
        if hold is None:
            return False
        waited = max(0.0, self._clock() - hold.started)
        hold.state = outcome
        hold.result = HoldResult(outcome, approvers, reason, waited)
        if not hold.future.done():
            hold.future.set_result(hold.result)
        self._decided[hold_id] = hold
        if len(self._heap) > 2 * len(self._waiting) + 64:  # drop entries of ended holds
            self._heap = [e for e in self._heap if e[1] in self._waiting]
            heapq.heapify(self._heap)
        while len(self._decided) > self._retain:
            self._decided.popitem(last=False)
        metrics.HOLDS_WAITING.dec()
        metrics.HOLD_OUTCOMES.labels(outcome.value).inc()
        metrics.HOLD_DECISION_SECONDS.labels(outcome.value).observe(waited)
        self._audit.emit(
            _OUTCOME_EVENTS[outcome],
            hold_id=hold_id,
            session_id=hold.session_id,
            rule=hold.rule,
            approvers=list(approvers),
            reason=reason,
            waited_seconds=round(waited, 3),
        )
        return True
