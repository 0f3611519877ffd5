"""Helpers for the admin tests: audit recorder, approvers, a real signature-checking
webhook receiver, and a running admin listener."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from pgsentry.admin import bound_port, create_admin_app, start_admin
from pgsentry.holds import ApproverStore, Hold, HoldRegistry, approvers_add_command
from pgsentry.policy.decision import HoldSpec, Principal

REQUESTER = Principal("app_user", "prod", "psql", "10.0.0.5")


@dataclass
class Recorder:
    """Implements the AuditEmitter protocol by keeping every record."""

    records: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    def emit(self, event: str, /, **fields: object) -> None:
        self.records.append((event, fields))

    def of(self, event: str) -> list[dict[str, object]]:
        return [f for e, f in self.records if e == event]


def add_approver(path: Path, name: str, groups: list[str], db_users: list[str]) -> str:
    out = io.StringIO()
    assert approvers_add_command(path, name, groups, db_users, out) == 0
    return out.getvalue().strip().splitlines()[-1]


def hold_on(
    reg: HoldRegistry, spec: HoldSpec | None = None, sql: str = "DROP TABLE accounts"
) -> Hold:
    return reg.create(
        statement=sql,
        analysis_summary={"kinds": ["drop_table"], "facts": ["drop_table accounts"]},
        principal=REQUESTER,
        session_id="sess-1",
        rule="hold-drops",
        spec=spec or HoldSpec(),
        message="table drops need approval",
    )


@dataclass
class Receiver:
    """A webhook endpoint that checks Standard Webhooks signatures on its own (independent
    of pgsentry.admin.signing), refuses stale timestamps and replayed message ids, and can
    be told to fail its first N requests."""

    secret: str
    fail_first: int = 0
    tolerance: float = 300
    accepted: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)
    runner: web.AppRunner | None = None
    url: str = ""

    def _check(self, headers: dict[str, str], body: bytes) -> str | None:
        msg_id = headers.get("webhook-id", "")
        ts = headers.get("webhook-timestamp", "")
        sigs = headers.get("webhook-signature", "").split()
        if not (msg_id and ts.isdigit() and sigs):
            return "missing headers"
        if abs(time.time() - int(ts)) > self.tolerance:
            return "stale timestamp"
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        expected = "v1," + base64.b64encode(mac).decode()
        if not any(hmac.compare_digest(s, expected) for s in sigs):
            return "bad signature"
        if msg_id in self.seen_ids:
            return "replayed"
        return None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        problem = self._check(headers, body)
        if problem is not None:
            self.refused.append(problem)
            return web.json_response({"error": problem}, status=401)
        if self.fail_first > 0:
            self.fail_first -= 1
            self.failed.append(headers)
            return web.json_response({"error": "try later"}, status=503)
        self.seen_ids.add(headers["webhook-id"])
        self.accepted.append((headers, body))
        return web.json_response({"ok": True})

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = await start_admin(app, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{bound_port(self.runner)}/hook"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class Admin:
    registry: HoldRegistry
    tokens: dict[str, str]
    base: str
    runner: web.AppRunner
    ready: list[bool]

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


async def start_admin_listener(
    registry: HoldRegistry, tokens: dict[str, str], store: ApproverStore
) -> Admin:
    ready = [False]
    app = create_admin_app(ready=lambda: ready[0], registry=registry, approvers=store)
    runner = await start_admin(app, "127.0.0.1", 0)
    return Admin(registry, tokens, f"http://127.0.0.1:{bound_port(runner)}", runner, ready)
