"""Outbound webhook notifier: tells approvers that a statement is held.

Owns the notification payloads (Standard Webhooks JSON envelope, or a Slack-compatible
message), signing them, and delivering them from background tasks with bounded
exponential backoff. Must not block or fail the hold: `notify()` only schedules tasks, and
a receiver that is down costs retries, an audit record and a metric, never the hold.
Must not import `pgsentry.proxy`; must not write a webhook URL or secret to the audit log
(a Slack URL is itself a credential): records name the target by `WebhookTarget.name`.
Every value put into Slack `mrkdwn` is escaped (`&`, `<`, `>`), so a client's
application_name or statement cannot add links or mentions such as `<!channel>`.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

import aiohttp

from pgsentry import metrics
from pgsentry.admin.signing import decode_secret, signed_headers
from pgsentry.holds import AuditEmitter, Hold
from pgsentry.holds.model import EV_NOTIFIED, EV_NOTIFY_FAILED

_log = logging.getLogger(__name__)

WebhookFormat = Literal["json", "slack"]
EVENT_TYPE = "hold.created"
_SLACK_TEXT_LIMIT = 2800  # Slack caps a section's text at 3000 characters


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """One receiver. `secret` (`whsec_...`) is required for the `json` format."""

    url: str
    secret: str | None = None
    format: WebhookFormat = "json"
    name: str = ""  # for audit/logs; defaults to the URL's host
    _key: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook url must be http(s)://host/...: {self.url!r}")
        if self.format not in ("json", "slack"):
            raise ValueError(f"webhook format must be 'json' or 'slack': {self.format!r}")
        if self.secret is None and self.format == "json":
            raise ValueError(f"webhook {self.url!r}: a secret (whsec_...) is required")
        key = decode_secret(self.secret) if self.secret is not None else None
        object.__setattr__(self, "_key", key)
        if not self.name:
            object.__setattr__(self, "name", f"{parts.scheme}://{parts.netloc}")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def hold_urls(hold: Hold, public_base_url: str | None) -> dict[str, str | None]:
    if not public_base_url:
        return {"hold_url": None, "approve_url": None, "deny_url": None}
    base = f"{public_base_url.rstrip('/')}/v1/holds/{hold.id}"
    return {"hold_url": base, "approve_url": f"{base}/approve", "deny_url": f"{base}/deny"}


def json_payload(hold: Hold, public_base_url: str | None) -> dict[str, object]:
    """The Standard Webhooks envelope: {type, timestamp, data}."""
    data = hold.to_json()
    data.update(hold_urls(hold, public_base_url))
    return {"type": EVENT_TYPE, "timestamp": _now_iso(), "data": data}


def slack_escape(text: str) -> str:
    """Slack's control characters as entities (`&amp;`, `&lt;`, `&gt;`): shown as typed,
    never read as a link, a mention or `<!channel>`."""
    return html.escape(text, quote=False)


def _slack_statement(statement: str) -> str:
    """The statement for a code block: escaped, at most `_SLACK_TEXT_LIMIT` characters
    (no entity cut in half), no fence of its own."""
    stmt = slack_escape(statement.replace("```", "` ` `"))
    if len(stmt) > _SLACK_TEXT_LIMIT:
        cut = stmt[:_SLACK_TEXT_LIMIT]
        head, amp, entity = cut.rpartition("&")
        if amp and ";" not in entity:
            cut = head
        stmt = cut + "\n… (truncated)"
    return stmt


def slack_payload(hold: Hold, public_base_url: str | None) -> dict[str, object]:
    """A Slack incoming-webhook message ({text, blocks}) describing the hold. Every value
    in the message text is escaped with `slack_escape`."""
    e = slack_escape
    p = hold.principal
    who = e(f"{p.user}@{p.database}" + (f" ({p.application_name})" if p.application_name else ""))
    hold_id, rule = e(hold.id), e(hold.rule)
    urls = hold_urls(hold, public_base_url)
    how = f"`pgsentry holds approve {hold_id}`"
    if urls["approve_url"]:
        how += f" or POST {e(urls['approve_url'])}"
    expires = e(str(hold.to_json()["expires_at"]))
    source = e(p.client_addr or "local socket")
    text = f"pgsentry held a statement from {who} (rule {rule}); hold {hold_id}"
    return {
        "text": text,
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*Statement held* by rule `{rule}` for *{who}* from {source}",
                },
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"```{_slack_statement(hold.statement)}```"},
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"hold `{hold_id}` · {hold.spec.approvals} approval(s) needed"
                        f" · expires {expires} · approve: {how}",
                    }
                ],
            },
        ],
    }


class WebhookNotifier:
    """Implements `pgsentry.holds.HoldNotifier` over HTTP (aiohttp).

    Per hold and target: attempt 1 at once, then up to `max_attempts` in all, waiting
    `backoff_initial * 2**(n-1)` (capped at `backoff_max`, with ±50 % jitter) between
    attempts. Any non-2xx answer, connection error or timeout is a failed attempt. Retries
    stop early once the hold has ended. Every attempt keeps the same `webhook-id` and gets
    a fresh timestamp and signature.
    """

    def __init__(
        self,
        targets: Sequence[WebhookTarget],
        *,
        audit: AuditEmitter,
        public_base_url: str | None = None,
        max_attempts: int = 6,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        request_timeout: float = 10.0,
    ) -> None:
        self.targets = tuple(targets)
        self._audit = audit
        self.public_base_url = public_base_url
        self._max_attempts = max(1, max_attempts)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def notify(self, hold: Hold) -> None:
        for target in self.targets:
            task = asyncio.get_running_loop().create_task(self._deliver(target, hold))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for every delivery in flight (tests, graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel deliveries in flight and close the HTTP session."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"User-Agent": "pgsentry-webhook"}
            )
        return self._session

    def _body(self, target: WebhookTarget, hold: Hold) -> bytes:
        builder = slack_payload if target.format == "slack" else json_payload
        return json.dumps(builder(hold, self.public_base_url), separators=(",", ":")).encode()

    async def _deliver(self, target: WebhookTarget, hold: Hold) -> None:
        msg_id = "msg_" + secrets.token_urlsafe(18)
        body = self._body(target, hold)
        base = {"hold_id": hold.id, "session_id": hold.session_id, "webhook": target.name}
        for attempt in range(1, self._max_attempts + 1):
            headers = {"Content-Type": "application/json"}
            key = target._key
            if key is not None:
                headers.update(signed_headers(key, msg_id, body))
            status: int | None = None
            error = ""
            try:
                async with self._client().post(target.url, data=body, headers=headers) as resp:
                    status = resp.status
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if status is not None and 200 <= status < 300:
                metrics.WEBHOOK_DELIVERIES.labels("success").inc()
                self._audit.emit(
                    EV_NOTIFIED, **base, attempt=attempt, status=status, webhook_id=msg_id
                )
                return
            error = error or f"HTTP {status}"
            final = attempt == self._max_attempts
            metrics.WEBHOOK_DELIVERIES.labels("failure" if final else "retry").inc()
            self._audit.emit(
                EV_NOTIFY_FAILED,
                **base,
                attempt=attempt,
                status=status,
                error=error,
                final=final,
                webhook_id=msg_id,
            )
            _log.warning("webhook %s for hold %s: %s", target.name, hold.id, error)
            if final:
                return
            if hold.waiting:
                delay = min(self._backoff_max, self._backoff_initial * 2 ** (attempt - 1))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            if not hold.waiting:
                metrics.WEBHOOK_DELIVERIES.labels("dropped").inc()
                return
