"""End to end: who may decide a hold, and the webhook's signature as a receiver checks it.

Forged and replayed notifications refused by the receiver's own verification; wrong
credentials (401), unknown holds (404), approvers outside the rule and self-approval
(403), double and late approvals (409), and a rule needing two distinct approvals.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from pgsentry.devtools.proxyproc import wait_until

from .e2e_support import (
    HeldClient,
    Stage,
    api,
    make_table,
    new_webhook_secret,
    table_exists,
)


def _post_to_receiver(stage: Stage, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    """POST to the receiver over HTTP; returns (status, the receiver's verdict)."""
    keep = {k: v for k, v in headers.items() if k.startswith("webhook-")}
    request = urllib.request.Request(
        stage.receiver.url, data=body, method="POST", headers=keep | {"content-type": "json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, stage.receiver.requests[-1].verdict


def _signed(stage: Stage, key: bytes | None, msg_id: str, ts: int, body: bytes) -> dict[str, str]:
    mac = hmac.new(key or stage.receiver.key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256)
    sig = "v1," + base64.b64encode(mac.digest()).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


def test_forged_and_replayed_webhooks_are_refused_by_the_receiver(stage: Stage) -> None:
    make_table(stage.pg, "victim_sig")
    with HeldClient(stage.dsn()) as client:
        job = client.start("DROP TABLE victim_sig")
        hold_id = client.wait_hold_id()
        real = stage.receiver.wait_for_hold(hold_id)
        assert stage.receiver.refused() == []  # every genuine delivery verified
        headers, body = real.headers, real.body

        # Replayed: the exact captured request, sent again.
        assert _post_to_receiver(stage, headers, body) == (400, "replayed")
        # Forged body under the captured signature (the statement swapped), fresh id.
        forged = body.replace(b"DROP TABLE victim_sig", b"DROP TABLE accounts")
        assert forged != body
        fresh = headers | {"webhook-id": "msg_forged_1"}
        assert _post_to_receiver(stage, fresh, forged) == (400, "bad signature")
        # Signed correctly, but with another key.
        other = new_webhook_secret().removeprefix("whsec_")
        wrong_key = _signed(stage, base64.b64decode(other), "msg_forged_2", int(time.time()), body)
        assert _post_to_receiver(stage, wrong_key, body) == (400, "bad signature")
        # Signed with the right key but ten minutes old (a replay with a new id).
        stale = _signed(stage, None, "msg_stale", int(time.time()) - 600, body)
        assert _post_to_receiver(stage, stale, body) == (400, "stale timestamp")
        # No signature at all.
        assert _post_to_receiver(stage, {}, body) == (400, "missing headers")
        # Control: a correct, fresh signature is accepted, so the refusals above mean it.
        good = _signed(stage, None, "msg_control", int(time.time()), body)
        assert _post_to_receiver(stage, good, body) == (204, "ok")

        assert stage.deny(hold_id, "bob", "signature test").status == 200
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            job.result()
    assert table_exists(stage.pg, "victim_sig")


def test_credentials_and_unknown_holds(stage: Stage) -> None:
    make_table(stage.pg, "victim_cred")
    with HeldClient(stage.dsn()) as client:
        job = client.start("DROP TABLE victim_cred")
        hold_id = client.wait_hold_id()
        approve = stage.hold_url(hold_id, "approve")
        bob = stage.tokens["bob"]
        assert api("POST", approve).status == 401  # no credential
        assert api("POST", approve, "pgsa_" + "x" * 43).status == 401  # unknown token
        assert api("POST", approve, bob[:-1]).status == 401  # almost the right token
        assert api("POST", approve, bob, scheme="Basic").status == 401
        assert api("GET", f"{stage.admin_url}/v1/holds", "wrong").status == 401
        assert api("GET", stage.hold_url(hold_id), None).status == 401
        # Nothing was decided by those attempts.
        assert stage.show(hold_id).body["state"] == "waiting"
        assert table_exists(stage.pg, "victim_cred")

        unknown = stage.hold_url("h_doesNotExist0000000000000", "approve")
        assert api("POST", unknown, bob).status == 404
        assert api("GET", stage.hold_url("h_doesNotExist0000000000000"), bob).status == 404
        listed = api("GET", f"{stage.admin_url}/v1/holds", bob).body["holds"]
        assert hold_id in [h["id"] for h in listed]

        assert stage.approve(hold_id, "bob").status == 200
        assert job.result() == "DROP TABLE"
    assert not table_exists(stage.pg, "victim_cred")


def test_self_approval_is_refused_and_another_approver_releases(stage: Stage) -> None:
    make_table(stage.pg, "victim_self", owner="alice_db")
    before = stage.metrics()
    # alice's approver entry maps her to the database user alice_db.
    with HeldClient(stage.dsn(user="alice_db")) as client:
        job = client.start("DROP TABLE victim_self")
        hold_id = client.wait_hold_id()
        refused = stage.approve(hold_id, "alice", "it is mine")
        assert refused.status == 403, refused.body
        assert "own statement" in refused.body["error"]
        assert refused.body["hold"]["state"] == "waiting"
        assert table_exists(stage.pg, "victim_self")
        assert stage.show(hold_id).body["approvals"] == []

        answer = stage.approve(hold_id, "bob", "checked with alice")
        assert answer.status == 200 and answer.body["state"] == "approved"
        assert job.result() == "DROP TABLE"
    assert not table_exists(stage.pg, "victim_self")
    key = ("pgsentry_hold_api_requests_total", (("action", "approve"), ("status", "403")))
    assert stage.metrics()[key] == before.get(key, 0.0) + 1


def test_two_approvals_needed_double_and_late_approvals_conflict(stage: Stage) -> None:
    make_table(stage.pg, "two_victim")
    with HeldClient(stage.dsn()) as client:
        job = client.start("DROP TABLE two_victim")
        hold_id = client.wait_hold_id()
        assert "rule hold-drop-two" in client.notice_for(hold_id).message_primary

        outsider = stage.approve(hold_id, "mallory")  # not in the rule's dba group
        assert outsider.status == 403, outsider.body

        first = stage.approve(hold_id, "carol", "one")
        assert first.status == 200
        assert first.body["state"] == "waiting"
        assert [a["approver"] for a in first.body["approvals"]] == ["carol"]
        again = stage.approve(hold_id, "carol", "one more time")
        assert again.status == 409, again.body  # an approver counts once
        # One approval of two: still held, nothing ran.
        assert table_exists(stage.pg, "two_victim")
        assert stage.show(hold_id).body["state"] == "waiting"

        second = stage.approve(hold_id, "bob", "two")
        assert second.status == 200 and second.body["state"] == "approved"
        assert sorted(second.body["decided_by"]) == ["bob", "carol"]
        assert job.result() == "DROP TABLE"
    assert not table_exists(stage.pg, "two_victim")

    late = stage.approve(hold_id, "alice", "late")
    assert late.status == 409 and late.body["hold"]["state"] == "approved"
    late_deny = stage.deny(hold_id, "alice", "late")
    assert late_deny.status == 409

    # The audit writer may still hold the last records for up to WRITER_INTERVAL.
    def approval_records() -> list[dict[str, object]] | None:
        found = [r for r in stage.audit_for(hold_id) if r["event"] == "hold_approval"]
        return found if len(found) >= 2 else None

    approvals = wait_until(approval_records, what="both hold_approval records")
    stage.wait_audit(hold_id, ["hold_released"])
    assert [(r["approver"], r["approvals"]) for r in approvals] == [("carol", 1), ("bob", 2)]
    released = next(r for r in stage.audit_for(hold_id) if r["event"] == "hold_released")
    assert sorted(released["approvers"]) == ["bob", "carol"]


def test_statement_hash_pins_the_approval_to_the_held_text(stage: Stage) -> None:
    make_table(stage.pg, "victim_sha")
    with HeldClient(stage.dsn()) as client:
        job = client.start("DROP TABLE victim_sha")
        hold_id = client.wait_hold_id()
        held = stage.show(hold_id).body
        url = stage.hold_url(hold_id, "approve")
        bob = stage.tokens["bob"]
        mismatch = api("POST", url, bob, {"statement_sha256": "0" * 64})
        assert mismatch.status == 409
        assert stage.show(hold_id).body["state"] == "waiting"
        ok = api("POST", url, bob, {"statement_sha256": held["statement_sha256"]})
        assert ok.status == 200, ok.body
        assert job.result() == "DROP TABLE"
    assert not table_exists(stage.pg, "victim_sha")
    assert held["statement"] == "DROP TABLE victim_sha"
