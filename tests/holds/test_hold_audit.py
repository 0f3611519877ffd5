"""Holds and webhook deliveries write the documented events into the real audit log."""

from __future__ import annotations

import asyncio
import socket

from holds_support import REQUESTER

from pgsentry.admin import WebhookNotifier, WebhookTarget, generate_secret
from pgsentry.audit import MemoryAuditLog, events
from pgsentry.holds import Approver, HoldRegistry
from pgsentry.policy.decision import HoldSpec


async def test_every_step_reaches_the_audit_log() -> None:
    audit = MemoryAuditLog()
    with socket.socket() as sock:  # a receiver that is down
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    notifier = WebhookNotifier(
        [WebhookTarget(url, generate_secret())], audit=audit, max_attempts=2, backoff_initial=0.01
    )
    reg = HoldRegistry(audit=audit, notifier=notifier)
    spec = HoldSpec(approvals=2)
    kw = dict(analysis_summary={}, principal=REQUESTER, session_id="s9", rule="r", spec=spec)
    approved = reg.create(statement="DROP TABLE a", **kw)  # type: ignore[arg-type]
    denied = reg.create(statement="DROP TABLE b", **kw)  # type: ignore[arg-type]
    cancelled = reg.create(statement="DROP TABLE c", **kw)  # type: ignore[arg-type]
    abandoned = reg.create(statement="DROP TABLE d", **kw)  # type: ignore[arg-type]
    await asyncio.wait_for(notifier.drain(), 10)
    await notifier.aclose()
    reg.approve(approved.id, Approver("alice"), "ok")
    reg.approve(approved.id, Approver("bob"), "ok too")
    reg.deny(denied.id, Approver("carol"), "no")
    reg.cancel(cancelled.id)
    reg.abandon(abandoned.id)
    await audit.aclose()

    def of(hold_id: str) -> list[str]:
        return [r["event"] for r in audit.records if r.get("hold_id") == hold_id]

    failed = [events.HOLD_NOTIFY_FAILED] * 2
    assert of(approved.id) == [
        events.HOLD_HELD,
        *failed,
        events.HOLD_APPROVAL,
        events.HOLD_APPROVAL,
        events.HOLD_RELEASED,
    ]
    assert of(denied.id) == [events.HOLD_HELD, *failed, events.HOLD_DENIAL]
    assert of(cancelled.id) == [events.HOLD_HELD, *failed, events.HOLD_CANCELLED]
    assert of(abandoned.id) == [events.HOLD_HELD, *failed, events.HOLD_ABANDONED]
    released = audit.events(events.HOLD_RELEASED)[0]
    assert released["approvers"] == ["alice", "bob"] and released["session_id"] == "s9"
    denial = audit.events(events.HOLD_DENIAL)[0]
    assert (denial["approvers"], denial["reason"]) == (["carol"], "no")
    held = audit.events(events.HOLD_HELD)[0]
    assert held["statement"] == "DROP TABLE a" and held["user"] == "app_user"
    assert url not in str(audit.records)  # target named by host only, never the full URL
