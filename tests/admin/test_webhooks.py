"""Webhook notifications to a real local receiver that verifies Standard Webhooks signatures."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from admin_support import Receiver, Recorder, hold_on

from pgsentry import metrics
from pgsentry.admin import WebhookNotifier, WebhookTarget, generate_secret
from pgsentry.admin.signing import decode_secret, sign, signed_headers, verify
from pgsentry.holds import Approver, HoldRegistry, HoldState
from pgsentry.policy.decision import HoldSpec, Principal

SECRET = generate_secret()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver(SECRET).start()
    yield r
    await r.stop()


def notifier(audit: Recorder, *targets: WebhookTarget, attempts: int = 4) -> WebhookNotifier:
    return WebhookNotifier(
        targets,
        audit=audit,
        public_base_url="https://pgsentry.example:9187/",
        max_attempts=attempts,
        backoff_initial=0.01,
        backoff_max=0.05,
        request_timeout=5,
    )


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    sig = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_refuses_forged_stale_and_malformed() -> None:
    key = decode_secret(SECRET)
    body = b'{"type":"hold.created"}'
    headers = signed_headers(key, "msg_1", body)
    assert verify(key, headers, body)
    assert not verify(decode_secret(generate_secret()), headers, body)  # other key
    assert not verify(key, headers, body + b" ")  # tampered body
    assert not verify(key, {**headers, "webhook-id": "msg_2"}, body)
    forged = "v1," + base64.b64encode(b"\0" * 32).decode()
    assert not verify(key, {**headers, "webhook-signature": forged}, body)
    assert not verify(key, headers, body, now=time.time() + 301)  # replayed too late
    assert not verify(key, {**headers, "webhook-timestamp": "soon"}, body)
    assert not verify(key, {}, body)
    rotated = {**headers, "webhook-signature": forged + " " + headers["webhook-signature"]}
    assert verify(key, rotated, body)


def test_bad_targets_are_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookTarget("https://hooks.example/x")
    with pytest.raises(ValueError, match="whsec_"):
        WebhookTarget("https://hooks.example/x", "whsec_not base64!")
    with pytest.raises(ValueError, match="http"):
        WebhookTarget("ftp://hooks.example/x", SECRET)
    assert WebhookTarget("https://hooks.slack.example/T/B/x", format="slack").name == (
        "https://hooks.slack.example"
    )


async def test_held_statement_is_posted_signed_with_everything_an_approver_needs(
    receiver: Receiver,
) -> None:
    audit = Recorder()
    n = notifier(audit, WebhookTarget(receiver.url, SECRET, name="ops"))
    reg = HoldRegistry(audit=audit, notifier=n)
    hold = hold_on(reg, HoldSpec(approvals=2, timeout_seconds=120))
    await asyncio.wait_for(n.drain(), 10)
    await n.aclose()
    assert receiver.refused == [] and len(receiver.accepted) == 1
    headers, body = receiver.accepted[0]
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert payload["type"] == "hold.created"
    data = payload["data"]
    assert data["id"] == hold.id and data["statement"] == "DROP TABLE accounts"
    assert data["analysis"] == {"kinds": ["drop_table"], "facts": ["drop_table accounts"]}
    assert (data["user"], data["database"], data["application_name"]) == (
        "app_user",
        "prod",
        "psql",
    )
    assert data["client_addr"] == "10.0.0.5" and data["rule"] == "hold-drops"
    assert data["approvals_required"] == 2 and data["expires_at"].endswith("Z")
    base = f"https://pgsentry.example:9187/v1/holds/{hold.id}"
    assert (data["approve_url"], data["deny_url"]) == (f"{base}/approve", f"{base}/deny")
    notified = audit.of("hold_notified")
    assert len(notified) == 1 and notified[0]["webhook"] == "ops"
    assert notified[0]["webhook_id"] == headers["webhook-id"]


async def test_replayed_delivery_is_refused_by_the_receiver(receiver: Receiver) -> None:
    audit = Recorder()
    n = notifier(audit, WebhookTarget(receiver.url, SECRET))
    hold_on(HoldRegistry(audit=audit, notifier=n))
    await n.drain()
    await n.aclose()
    headers, body = receiver.accepted[0]
    replay = {k: v for k, v in headers.items() if k.startswith("webhook-")}
    async with aiohttp.ClientSession() as s:
        async with s.post(receiver.url, data=body, headers=replay) as r:
            assert r.status == 401
        forged = dict(replay, **{"webhook-id": "msg_forged"})
        async with s.post(receiver.url, data=body, headers=forged) as r:
            assert r.status == 401
    assert receiver.refused == ["replayed", "bad signature"]


async def test_failing_receiver_gets_retries_with_the_same_message_id(
    receiver: Receiver,
) -> None:
    audit = Recorder()
    receiver.fail_first = 2
    retries0 = metrics.sample("pgsentry_webhook_deliveries_total", {"result": "retry"})
    n = notifier(audit, WebhookTarget(receiver.url, SECRET))
    hold = hold_on(HoldRegistry(audit=audit, notifier=n))
    await asyncio.wait_for(n.drain(), 10)
    await n.aclose()
    assert len(receiver.failed) == 2 and len(receiver.accepted) == 1
    ids = {h["webhook-id"] for h in [*receiver.failed, receiver.accepted[0][0]]}
    assert len(ids) == 1
    failures = audit.of("hold_notify_failed")
    assert [(f["attempt"], f["status"], f["final"]) for f in failures] == [
        (1, 503, False),
        (2, 503, False),
    ]
    assert audit.of("hold_notified")[0]["attempt"] == 3
    assert metrics.sample("pgsentry_webhook_deliveries_total", {"result": "retry"}) == retries0 + 2
    assert hold.state is HoldState.WAITING


async def test_receiver_down_never_blocks_or_loses_the_hold(receiver: Receiver) -> None:
    dead_url = receiver.url
    await receiver.stop()  # nothing listens on that port any more
    audit = Recorder()
    failures0 = metrics.sample("pgsentry_webhook_deliveries_total", {"result": "failure"})
    n = notifier(audit, WebhookTarget(dead_url, SECRET), attempts=3)
    reg = HoldRegistry(audit=audit, notifier=n)
    hold = hold_on(reg)
    assert hold.state is HoldState.WAITING  # create() returned before any delivery
    await asyncio.wait_for(n.drain(), 10)
    await n.aclose()
    failures = audit.of("hold_notify_failed")
    assert [f["attempt"] for f in failures] == [1, 2, 3] and failures[-1]["final"] is True
    assert all("Connect" in str(f["error"]) for f in failures)
    after = metrics.sample("pgsentry_webhook_deliveries_total", {"result": "failure"})
    assert after == failures0 + 1
    assert hold.state is HoldState.WAITING
    assert reg.approve(hold.id, Approver("bob", ("dba",))).status == 200
    assert (await hold.wait()).outcome is HoldState.APPROVED


async def test_retries_stop_once_the_hold_ended(receiver: Receiver) -> None:
    audit = Recorder()
    receiver.fail_first = 100
    dropped0 = metrics.sample("pgsentry_webhook_deliveries_total", {"result": "dropped"})
    n = WebhookNotifier(
        [WebhookTarget(receiver.url, SECRET)], audit=audit, backoff_initial=0.2, max_attempts=50
    )
    reg = HoldRegistry(audit=audit, notifier=n)
    hold = hold_on(reg)

    async def first_failure() -> None:
        while not audit.of("hold_notify_failed"):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(first_failure(), 10)
    assert len(receiver.failed) == 1
    reg.cancel(hold.id)
    await asyncio.wait_for(n.drain(), 10)
    await n.aclose()
    assert len(receiver.failed) < 50
    after = metrics.sample("pgsentry_webhook_deliveries_total", {"result": "dropped"})
    assert after == dropped0 + 1


async def test_slack_format(receiver: Receiver) -> None:
    audit = Recorder()
    n = notifier(audit, WebhookTarget(receiver.url, SECRET, format="slack"))
    hold = hold_on(HoldRegistry(audit=audit, notifier=n), sql="DROP TABLE a; ```x```")
    await n.drain()
    await n.aclose()
    payload = json.loads(receiver.accepted[0][1])
    assert set(payload) == {"text", "blocks"}
    assert hold.id in payload["text"] and "app_user@prod" in payload["text"]
    code = payload["blocks"][1]["text"]["text"]
    assert code.startswith("```DROP TABLE a;") and code.count("```") == 2
    assert f"/v1/holds/{hold.id}/approve" in json.dumps(payload["blocks"])


async def test_every_target_gets_its_own_delivery(receiver: Receiver) -> None:
    other = await Receiver(generate_secret()).start()
    try:
        audit = Recorder()
        n = notifier(
            audit, WebhookTarget(receiver.url, SECRET), WebhookTarget(other.url, other.secret)
        )
        hold_on(HoldRegistry(audit=audit, notifier=n))
        await n.drain()
        await n.aclose()
        assert len(receiver.accepted) == 1 and len(other.accepted) == 1
        assert receiver.refused == [] and other.refused == []
    finally:
        await other.stop()


async def test_slack_format_escapes_everything_a_client_controls(receiver: Receiver) -> None:
    audit = Recorder()
    n = notifier(audit, WebhookTarget(receiver.url, SECRET, format="slack"))
    evil = "<!channel> <https://evil.example|click> &amp;"
    hold = HoldRegistry(audit=audit, notifier=n).create(
        statement=f"DROP TABLE a; -- {evil}" + "<" * 3000,
        analysis_summary={},
        principal=Principal(f"u{evil}", f"d{evil}", f"app{evil}", f"c{evil}"),
        session_id="sess-1",
        rule="hold-drops",
        spec=HoldSpec(),
    )
    await n.drain()
    await n.aclose()
    payload = json.loads(receiver.accepted[0][1])
    texts = [payload["text"]] + [t for b in payload["blocks"] for t in _mrkdwn_texts(b)]
    assert len(texts) == 4
    for text in texts:
        assert "<" not in text and ">" not in text
        assert "&amp;amp;" in text or "&lt;" in text or hold.id in text
    assert all("&amp;amp;" in t for t in texts[:2])
    assert "&lt;!channel&gt;" in payload["blocks"][1]["text"]["text"]
    code = payload["blocks"][1]["text"]["text"]
    assert code.endswith("(truncated)```") and len(code) < 2900 and "&lt;&lt;" in code


def _mrkdwn_texts(block: dict[str, Any]) -> list[str]:
    if "text" in block:
        return [block["text"]["text"]]
    return [e["text"] for e in block.get("elements", [])]
