"""The admin listener over real HTTP on 127.0.0.1: health, metrics and the holds API."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from admin_support import Admin, Recorder, hold_on

from pgsentry import metrics
from pgsentry.admin import bound_port, create_admin_app, start_admin
from pgsentry.holds import HoldState, statement_sha256
from pgsentry.policy.decision import HoldSpec


async def call(
    admin: Admin, method: str, path: str, who: str | None = "alice", **kw: Any
) -> tuple[int, Any]:
    headers = admin.auth(who) if who else {}
    headers.update(kw.pop("headers", {}))
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, admin.base + path, headers=headers, **kw) as r,
    ):
        return r.status, await r.json()


async def test_health_ready_and_metrics(admin: Admin) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(admin.base + "/healthz") as r:
            assert r.status == 200
        async with s.get(admin.base + "/readyz") as r:
            assert r.status == 503
        admin.ready[0] = True
        async with s.get(admin.base + "/readyz") as r:
            assert r.status == 200
        hold_on(admin.registry)
        async with s.get(admin.base + "/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    for name in (
        "pgsentry_holds_waiting ",
        "pgsentry_connections_total",
        "pgsentry_hold_decision_seconds_bucket",
        'pgsentry_holds_created_total{rule="hold-drops"}',
    ):
        assert name in text


async def test_without_a_registry_only_health_and_metrics_exist() -> None:
    runner = await start_admin(create_admin_app(ready=lambda: True), "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{bound_port(runner)}"
        async with aiohttp.ClientSession() as s:
            for path, status in (("/healthz", 200), ("/readyz", 200), ("/v1/holds", 404)):
                async with s.get(base + path) as r:
                    assert r.status == status
    finally:
        await runner.cleanup()


async def test_approve_releases_and_returns_state(admin: Admin) -> None:
    hold = hold_on(admin.registry)
    status, body = await call(admin, "GET", "/v1/holds")
    assert status == 200 and [h["id"] for h in body["holds"]] == [hold.id]
    status, body = await call(admin, "GET", f"/v1/holds/{hold.id}", who="carol")
    assert status == 200 and body["statement"] == "DROP TABLE accounts"
    assert body["statement_sha256"] == statement_sha256("DROP TABLE accounts")
    status, body = await call(
        admin, "POST", f"/v1/holds/{hold.id}/approve", json={"reason": "release 42"}
    )
    assert status == 200
    assert body["state"] == "approved" and body["decided_by"] == ["alice"]
    assert body["approvals"][0]["reason"] == "release 42"
    result = await asyncio.wait_for(hold.wait(), 5)
    assert result.outcome is HoldState.APPROVED and result.approvers == ("alice",)
    status, body = await call(admin, "GET", "/v1/holds")
    assert body["holds"] == []
    status, body = await call(admin, "GET", "/v1/holds?all=1")
    assert [h["state"] for h in body["holds"]] == ["approved"]


async def test_deny_with_reason_and_empty_bodies(admin: Admin) -> None:
    hold = hold_on(admin.registry)
    status, body = await call(admin, "POST", f"/v1/holds/{hold.id}/deny", who="bob")
    assert status == 200 and body["state"] == "denied"
    result = await hold.wait()
    assert result.outcome is HoldState.DENIED and result.approvers == ("bob",)
    other = hold_on(admin.registry)
    status, body = await call(
        admin, "POST", f"/v1/holds/{other.id}/deny", who="bob", json={"reason": "no"}
    )
    assert status == 200 and body["reason"] == "no"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer pgsa_wrong-token"},
        {"Authorization": "Basic YWxpY2U6eA=="},
    ],
)
async def test_missing_or_wrong_credential_is_401(admin: Admin, headers: dict[str, str]) -> None:
    hold = hold_on(admin.registry)
    for method, path in (
        ("GET", "/v1/holds"),
        ("GET", f"/v1/holds/{hold.id}"),
        ("POST", f"/v1/holds/{hold.id}/approve"),
        ("POST", f"/v1/holds/{hold.id}/deny"),
        ("POST", "/v1/holds/h_unknown/approve"),
    ):
        async with (
            aiohttp.ClientSession() as s,
            s.request(method, admin.base + path, headers=headers) as r,
        ):
            assert r.status == 401, (method, path)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert hold.state is HoldState.WAITING and not hold.approvals


async def test_unknown_hold_is_404(admin: Admin) -> None:
    for method, path in (
        ("GET", "/v1/holds/h_doesnotexist"),
        ("POST", "/v1/holds/h_doesnotexist/approve"),
        ("POST", "/v1/holds/h_doesnotexist/deny"),
    ):
        status, body = await call(admin, method, path)
        assert status == 404 and body["error"] == "no such hold"


async def test_not_allowed_and_self_approval_are_403(admin: Admin) -> None:
    hold = hold_on(admin.registry, HoldSpec(groups=("dba",)))
    status, body = await call(admin, "POST", f"/v1/holds/{hold.id}/approve", who="carol")
    assert status == 403 and body["hold"]["state"] == "waiting"
    status, body = await call(admin, "POST", f"/v1/holds/{hold.id}/deny", who="carol")
    assert status == 403
    # mallory is in dba, but her db_users include app_user, who ran the statement
    status, body = await call(admin, "POST", f"/v1/holds/{hold.id}/approve", who="mallory")
    assert status == 403 and "own statement" in body["error"]
    assert hold.state is HoldState.WAITING and not hold.approvals


async def test_double_approval_and_n_of_m(admin: Admin) -> None:
    hold = hold_on(admin.registry, HoldSpec(approvals=2))
    path = f"/v1/holds/{hold.id}/approve"
    status, body = await call(admin, "POST", path, who="alice")
    assert status == 200 and body["state"] == "waiting" and len(body["approvals"]) == 1
    status, body = await call(admin, "POST", path, who="alice")
    assert status == 409 and "already" in body["error"]
    assert hold.state is HoldState.WAITING
    status, body = await call(admin, "POST", path, who="bob")
    assert status == 200 and body["state"] == "approved"
    assert body["decided_by"] == ["alice", "bob"]
    status, body = await call(admin, "POST", path, who="carol")  # replayed / late approval
    assert status == 409 and body["hold"]["state"] == "approved"


@pytest.mark.parametrize("end", ["denied", "expired", "cancelled", "abandoned"])
async def test_decisions_on_ended_holds_are_409(admin: Admin, end: str) -> None:
    hold = hold_on(admin.registry, HoldSpec(timeout_seconds=0.05 if end == "expired" else 60))
    if end == "denied":
        admin.registry.deny(hold.id, "bob")
    elif end == "cancelled":
        admin.registry.cancel(hold.id)
    elif end == "abandoned":
        admin.registry.abandon(hold.id)
    await asyncio.wait_for(hold.wait(), 5)
    for action in ("approve", "deny"):
        status, body = await call(admin, "POST", f"/v1/holds/{hold.id}/{action}")
        assert status == 409
        assert body["error"] == f"hold is {end}" and body["hold"]["state"] == end


async def test_approval_bound_to_statement_hash_and_bad_bodies(admin: Admin) -> None:
    hold = hold_on(admin.registry)
    path = f"/v1/holds/{hold.id}/approve"
    status, _ = await call(admin, "POST", path, json={"statement_sha256": "00" * 32})
    assert status == 409
    status, _ = await call(admin, "POST", path, data=b"{not json", headers={"X": "1"})
    assert status == 400
    status, _ = await call(admin, "POST", path, json={"reason": 12})
    assert status == 400
    assert hold.state is HoldState.WAITING
    sha = statement_sha256("DROP TABLE accounts")
    status, body = await call(admin, "POST", path, json={"statement_sha256": sha})
    assert status == 200 and body["state"] == "approved"


async def test_api_request_metric(admin: Admin) -> None:
    before = metrics.sample("pgsentry_hold_api_requests_total", {"action": "deny", "status": "404"})
    await call(admin, "POST", "/v1/holds/h_nope/deny")
    after = metrics.sample("pgsentry_hold_api_requests_total", {"action": "deny", "status": "404"})
    assert after == before + 1


async def test_thousand_holds_approved_concurrently(admin: Admin) -> None:
    holds = [hold_on(admin.registry, sql=f"DROP TABLE t{i}") for i in range(1000)]
    assert len({h.id for h in holds}) == 1000
    waiters = [asyncio.ensure_future(h.wait()) for h in holds]
    connector = aiohttp.TCPConnector(limit=50)
    async with aiohttp.ClientSession(connector=connector, headers=admin.auth("bob")) as s:

        async def approve(hold_id: str) -> int:
            async with s.post(f"{admin.base}/v1/holds/{hold_id}/approve") as r:
                return r.status

        statuses = await asyncio.gather(*(approve(h.id) for h in holds))
    assert statuses == [200] * 1000
    results = await asyncio.wait_for(asyncio.gather(*waiters), 30)
    assert all(r.outcome is HoldState.APPROVED and r.approvers == ("bob",) for r in results)
    assert admin.registry.waiting() == []


async def test_refused_approvals_are_audited_without_the_token(
    admin: Admin, audit: Recorder
) -> None:
    hold = hold_on(admin.registry, HoldSpec(approvals=2))
    forged = admin.tokens["alice"][:-2] + "xx"
    path = f"/v1/holds/{hold.id}"
    attempts: list[tuple[str, str, str | None, dict[str, Any]]] = [
        (path + "/approve", "forged", None, {"headers": {"Authorization": f"Bearer {forged}"}}),
        (path + "/approve", "self", "mallory", {}),
        (path + "/approve", "sha", "alice", {"json": {"statement_sha256": "0" * 64}}),
        (path + "/approve", "first", "alice", {}),
        (path + "/approve", "replay", "alice", {}),
        ("/v1/holds/h_nope/deny", "unknown", "bob", {}),
    ]
    statuses = [(await call(admin, "POST", p, who, **kw))[0] for p, _, who, kw in attempts]
    assert statuses == [401, 403, 409, 200, 409, 404]
    refused = audit.of("hold_approval_refused")
    assert [(r["status"], r["approver"], r["action"]) for r in refused] == [
        (401, None, "approve"),
        (403, "mallory", "approve"),
        (409, "alice", "approve"),
        (409, "alice", "approve"),
        (404, "bob", "deny"),
    ]
    assert [r["hold_id"] for r in refused] == [hold.id] * 4 + [None]
    assert refused[-1]["requested_id"] == "h_nope" and refused[0]["session_id"] == "sess-1"
    assert all(r["client_addr"] == "127.0.0.1" and r["reason"] for r in refused)
    assert "already" in str(refused[3]["reason"])
    logged = repr(audit.records)
    assert all(token not in logged for token in [forged, *admin.tokens.values()])
