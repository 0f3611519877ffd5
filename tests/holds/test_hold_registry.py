"""HoldRegistry: approval rules, outcomes, expiry, audit and metrics."""

from __future__ import annotations

import asyncio

import pytest
from holds_support import REQUESTER, FakeClock, Recorder

from pgsentry import metrics
from pgsentry.holds import (
    Approver,
    ApproverStore,
    Hold,
    HoldLimitExceeded,
    HoldRegistry,
    HoldState,
    statement_sha256,
)
from pgsentry.policy.decision import HoldSpec

ALICE = Approver("alice", ("dba",), ("alice_db",))
BOB = Approver("bob", ("dba", "oncall"))
CAROL = Approver("carol", ("oncall",))
MALLORY = Approver("mallory", (), ("app_user",))  # the requester's own approver identity


def hold_on(reg: HoldRegistry, spec: HoldSpec | None = None, sql: str = "DROP TABLE t") -> Hold:
    return reg.create(
        statement=sql,
        analysis_summary={"kinds": ["drop_table"]},
        principal=REQUESTER,
        session_id="s1",
        rule="no-drop",
        spec=spec or HoldSpec(),
        message="dropping tables needs a second pair of eyes",
    )


def registry(audit: Recorder, clock: FakeClock | None = None, **kw: object) -> HoldRegistry:
    if clock is None:
        return HoldRegistry(audit=audit, **kw)  # type: ignore[arg-type]
    return HoldRegistry(audit=audit, clock=clock, **kw)  # type: ignore[arg-type]


async def test_single_approval_releases(audit: Recorder) -> None:
    reg = registry(audit)
    hold = hold_on(reg)
    assert hold.id.startswith("h_") and len(hold.id) >= 24
    assert hold.statement_sha256 == statement_sha256("DROP TABLE t")
    verdict = reg.approve(hold.id, ALICE, "planned in release 42")
    assert verdict.status == 200
    result = await asyncio.wait_for(hold.wait(), 5)
    assert result.outcome is HoldState.APPROVED
    assert result.approvers == ("alice",)
    assert audit.events(hold.id) == ["hold_held", "hold_approval", "hold_released"]
    assert reg.get(hold.id) is hold and not reg.waiting()


async def test_deny_carries_name_and_reason(audit: Recorder) -> None:
    reg = registry(audit)
    hold = hold_on(reg)
    assert reg.deny(hold.id, BOB, "not during business hours").status == 200
    result = await hold.wait()
    assert (result.outcome, result.approvers, result.reason) == (
        HoldState.DENIED,
        ("bob",),
        "not during business hours",
    )
    assert audit.events(hold.id) == ["hold_held", "hold_denial"]


async def test_n_of_m_distinct_approvals(audit: Recorder) -> None:
    reg = registry(audit)
    hold = hold_on(reg, HoldSpec(approvals=2))
    assert reg.approve(hold.id, ALICE).status == 200
    assert hold.state is HoldState.WAITING
    again = reg.approve(hold.id, ALICE)
    assert again.status == 409 and "already" in again.error
    assert hold.state is HoldState.WAITING
    assert reg.approve(hold.id, BOB).status == 200
    result = await hold.wait()
    assert result.outcome is HoldState.APPROVED and result.approvers == ("alice", "bob")


async def test_restricted_approvers_and_groups(audit: Recorder) -> None:
    reg = registry(audit)
    by_group = hold_on(reg, HoldSpec(groups=("dba",)))
    assert reg.approve(by_group.id, CAROL).status == 403
    assert reg.deny(by_group.id, CAROL).status == 403
    assert reg.approve(by_group.id, BOB).status == 200
    by_name = hold_on(reg, HoldSpec(approvers=("carol",)))
    assert reg.approve(by_name.id, ALICE).status == 403
    assert reg.approve(by_name.id, CAROL).status == 200
    either = hold_on(reg, HoldSpec(approvers=("carol",), groups=("dba",), approvals=2))
    assert reg.approve(either.id, CAROL).status == 200
    assert reg.approve(either.id, ALICE).status == 200
    assert either.state is HoldState.APPROVED


async def test_self_approval_forbidden_unless_allowed(audit: Recorder) -> None:
    reg = registry(audit)
    hold = hold_on(reg)
    verdict = reg.approve(hold.id, MALLORY, "looks fine to me")
    assert verdict.status == 403 and "own statement" in verdict.error
    assert hold.state is HoldState.WAITING and not hold.approvals
    # the approver whose name equals the database user is the requester too
    assert reg.approve(hold.id, Approver("app_user")).status == 403
    # the requester may still deny their own statement
    assert reg.deny(hold.id, MALLORY, "oops, wrong database").status == 200
    allowed = hold_on(reg, HoldSpec(allow_self_approval=True))
    assert reg.approve(allowed.id, MALLORY).status == 200


async def test_unknown_hold_and_unknown_approver_name(
    audit: Recorder, approvers_file: tuple[ApproverStore, dict[str, str]]
) -> None:
    store, _ = approvers_file
    reg = registry(audit, approvers=store)
    assert reg.approve("h_nope", ALICE).status == 404
    assert reg.deny("h_nope", ALICE).status == 404
    hold = hold_on(reg)
    assert reg.approve(hold.id, "nobody").status == 403
    assert reg.approve(hold.id, "bob").status == 200  # resolved through the store


async def test_approval_bound_to_statement_text(audit: Recorder) -> None:
    reg = registry(audit)
    hold = hold_on(reg, sql="DROP TABLE orders")
    wrong = reg.approve(hold.id, ALICE, statement_sha256=statement_sha256("DROP TABLE t"))
    assert wrong.status == 409 and hold.state is HoldState.WAITING
    right = reg.approve(hold.id, ALICE, statement_sha256=statement_sha256("DROP TABLE orders"))
    assert right.status == 200 and hold.state is HoldState.APPROVED


@pytest.mark.parametrize("end", ["deny", "cancel", "abandon", "expire"])
async def test_late_decisions_conflict(audit: Recorder, clock: FakeClock, end: str) -> None:
    reg = registry(audit, clock)
    hold = hold_on(reg, HoldSpec(timeout_seconds=60))
    if end == "deny":
        reg.deny(hold.id, BOB)
    elif end == "cancel":
        assert reg.cancel(hold.id) and not reg.cancel(hold.id)
    elif end == "abandon":
        assert reg.abandon(hold.id) and not reg.abandon(hold.id)
    else:
        clock.now += 61
        assert reg.expire_due() == 1
    late = reg.approve(hold.id, ALICE)
    assert late.status == 409 and late.hold is hold
    assert reg.deny(hold.id, ALICE).status == 409
    assert (await hold.wait()).outcome is hold.state
    assert hold.state is not HoldState.APPROVED


async def test_expiry_with_injected_clock(audit: Recorder, clock: FakeClock) -> None:
    reg = registry(audit, clock)
    short = hold_on(reg, HoldSpec(timeout_seconds=30))
    long = hold_on(reg, HoldSpec(timeout_seconds=300))
    clock.now += 29.9
    assert reg.expire_due() == 0
    clock.now += 0.2
    assert reg.expire_due() == 1
    assert short.state is HoldState.EXPIRED and long.state is HoldState.WAITING
    result = await short.wait()
    assert result.outcome is HoldState.EXPIRED and result.waited_seconds == pytest.approx(30.1)
    assert audit.events(short.id) == ["hold_held", "hold_expired"]
    clock.now += 1000
    assert reg.expire_due() == 1 and long.state is HoldState.EXPIRED


async def test_expiry_on_the_real_loop_timer(audit: Recorder) -> None:
    reg = registry(audit)
    holds = [hold_on(reg, HoldSpec(timeout_seconds=0.05 * (i % 3 + 1))) for i in range(30)]
    keep = hold_on(reg, HoldSpec(timeout_seconds=60))
    results = await asyncio.wait_for(asyncio.gather(*(h.wait() for h in holds)), 10)
    assert {r.outcome for r in results} == {HoldState.EXPIRED}
    assert keep.state is HoldState.WAITING and reg.waiting() == [keep]
    reg.close()
    assert (await keep.wait()).outcome is HoldState.ABANDONED


async def test_waiter_cancellation_does_not_end_hold(audit: Recorder) -> None:
    reg = registry(audit)
    hold = hold_on(reg)
    waiter = asyncio.create_task(hold.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert hold.state is HoldState.WAITING
    assert reg.abandon(hold.id)
    assert (await hold.wait()).outcome is HoldState.ABANDONED


async def test_limit_and_retention(audit: Recorder) -> None:
    reg = registry(audit, max_waiting=3, retain_decided=2)
    holds = [hold_on(reg) for _ in range(3)]
    with pytest.raises(HoldLimitExceeded):
        hold_on(reg)
    for h in holds:
        reg.cancel(h.id)
    assert reg.get(holds[0].id) is None  # pushed out of the retained decided holds
    assert reg.get(holds[2].id) is holds[2]
    assert len({h.id for h in holds}) == 3


async def test_metrics_follow_the_holds(audit: Recorder) -> None:
    waiting0 = metrics.sample("pgsentry_holds_waiting")
    approved0 = metrics.sample("pgsentry_hold_outcomes_total", {"outcome": "approved"})
    count0 = metrics.sample("pgsentry_hold_decision_seconds_count", {"outcome": "approved"})
    reg = registry(audit)
    a, b = hold_on(reg), hold_on(reg)
    assert metrics.sample("pgsentry_holds_waiting") == waiting0 + 2
    reg.approve(a.id, ALICE)
    reg.cancel(b.id)
    assert metrics.sample("pgsentry_holds_waiting") == waiting0
    assert metrics.sample("pgsentry_hold_outcomes_total", {"outcome": "approved"}) == approved0 + 1
    assert (
        metrics.sample("pgsentry_hold_decision_seconds_count", {"outcome": "approved"})
        == count0 + 1
    )
