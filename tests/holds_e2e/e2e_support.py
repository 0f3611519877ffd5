"""Support for the end-to-end hold tests: a signature-verifying webhook receiver, approvers
made with the real CLI, an approver's HTTP client, a policy with hold rules, and a `Stage`
(real pgsentry subprocess wired to all of these) plus ways to look at the cluster directly.

Owns only test scaffolding. Must not import the proxy, the registry or the signing module
in-process: pgsentry is observed as approvers and clients see it (SQL, HTTP, audit file,
/metrics). The receiver's signature check is its own HMAC code, on purpose.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from aiohttp import web
from integration.helpers import Background
from prometheus_client.parser import text_string_to_metric_families

from pgsentry.devtools import PgCluster, ProxyProcess
from pgsentry.devtools.proxyproc import free_port, wait_until
from pgsentry.devtools.testkit import ProxyFactory

HOLD_ID_RE = re.compile(r"\bhold (h_[A-Za-z0-9_-]+)")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SIGNATURE_TOLERANCE = 300  # seconds, as Standard Webhooks recommends

POLICY = """\
version: 1
default: allow
on_unparseable: deny
rules:
  - id: hold-drop-quick
    description: Drops of quick_* tables wait only a moment (timeout test).
    action: hold
    message: quick tables expire fast
    match: {kinds: [drop_table], relations: ["public.quick_*"]}
    hold: {timeout: 3s, approvals: 1}
  - id: hold-drop-two
    description: Drops of two_* tables need two DBAs; the requester may not approve.
    action: hold
    match: {kinds: [drop_table], relations: ["public.two_*"]}
    hold: {timeout: 120s, approvals: 2, groups: [dba], allow_self_approval: false}
  - id: hold-delete-held
    description: Every DELETE from a held_* table waits for one approver, each time.
    action: hold
    match: {kinds: [delete], relations: ["public.held_*"]}
    hold: {timeout: 120s, approvals: 1}
  - id: hold-drop-public
    description: Any other table drop in public waits for one approver.
    action: hold
    message: table drops need a second pair of eyes
    match: {kinds: [drop_table], relations: ["public.*"]}
    hold: {timeout: 120s, approvals: 1}
"""

# name -> (groups, db_users). alice is the database user alice_db under the documented
# approver/database-user mapping; mallory is an approver outside the dba group.
APPROVERS: dict[str, tuple[list[str], list[str]]] = {
    "alice": (["dba"], ["alice_db"]),
    "bob": (["dba"], []),
    "carol": (["dba", "oncall"], []),
    "mallory": (["oncall"], []),
}


def pgsentry_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m pgsentry ARGS` (the real CLI) and capture its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGSENTRY_")}
    return subprocess.run(
        [sys.executable, "-m", "pgsentry", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def add_approvers(path: Path) -> dict[str, str]:
    """Create APPROVERS with `pgsentry approvers add`; returns name -> token (printed once)."""
    tokens: dict[str, str] = {}
    for name, (groups, db_users) in APPROVERS.items():
        args = ["approvers", "add", name, "--file", str(path)]
        for g in groups:
            args += ["--group", g]
        for u in db_users:
            args += ["--db-user", u]
        proc = pgsentry_cli(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        token = proc.stdout.strip().splitlines()[-1].strip()
        assert token.startswith("pgsa_"), proc.stdout
        assert token not in path.read_text(), "the token must not be stored in clear"
        tokens[name] = token
    return tokens


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")


# --------------------------------------------------------------------- webhook receiver
@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    verdict: str  # "ok" or why it was refused

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class WebhookReceiver:
    """An aiohttp server on 127.0.0.1 in its own thread that verifies Standard Webhooks
    signatures with its own HMAC-SHA256 code, refuses stale timestamps and replayed ids,
    and records every request (accepted ones answer 204, refused ones 400)."""

    def __init__(self, secret: str) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        self.requests: list[Delivery] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/pgsentry"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/pgsentry", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verdict = self.check(headers, body)
        with self._lock:
            self.requests.append(Delivery(headers, body, verdict))
        return web.Response(status=204) if verdict == "ok" else web.Response(status=400)

    def expected_signature(self, msg_id: str, timestamp: str, body: bytes) -> str:
        mac = hmac.new(self.key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
        return base64.b64encode(mac.digest()).decode("ascii")

    def check(self, headers: dict[str, str], body: bytes, now: float | None = None) -> str:
        """'ok', or why the request is refused. Accepting marks its id as seen."""
        msg_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        signatures = headers.get("webhook-signature", "")
        if not (msg_id and timestamp and signatures):
            return "missing headers"
        if not timestamp.isdigit():
            return "bad timestamp"
        if abs((time.time() if now is None else now) - int(timestamp)) > SIGNATURE_TOLERANCE:
            return "stale timestamp"
        expected = self.expected_signature(msg_id, timestamp, body)
        valid = False
        for candidate in signatures.split():
            version, _, sig = candidate.partition(",")
            if version == "v1" and hmac.compare_digest(sig.encode(), expected.encode()):
                valid = True
        if not valid:
            return "bad signature"
        with self._lock:
            if msg_id in self._seen:
                return "replayed"
            self._seen.add(msg_id)
        return "ok"

    def accepted(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.requests if d.verdict == "ok"]

    def refused(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.requests if d.verdict != "ok"]

    def wait_for_hold(self, hold_id: str, timeout: float = 20) -> Delivery:
        def find() -> Delivery | None:
            for d in self.accepted():
                if d.payload.get("data", {}).get("id") == hold_id:
                    return d
            return None

        found: Delivery = wait_until(find, timeout=timeout, what=f"webhook for {hold_id}")
        return found


# --------------------------------------------------------------------- approver's client
@dataclass
class Answer:
    status: int
    body: dict[str, Any]


async def api_async(
    method: str, url: str, token: str | None = None, body: Any = None, scheme: str = "Bearer"
) -> Answer:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.request(method, url, headers=headers, json=body) as resp,
    ):
        text = await resp.text()
        return Answer(resp.status, json.loads(text) if text else {})


def api(
    method: str, url: str, token: str | None = None, body: Any = None, scheme: str = "Bearer"
) -> Answer:
    """The same call from synchronous code: a fresh event loop, in a helper thread when
    this thread already runs one (an async test blocking briefly on purpose)."""
    call = api_async(method, url, token, body, scheme)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call)
    return Background(lambda: asyncio.run(call)).result(60)


# --------------------------------------------------------------------- the stage
@dataclass
class Stage:
    """One pgsentry in front of `pg` with the hold policy, approvers and a webhook."""

    pg: PgCluster
    proxy: ProxyProcess
    tokens: dict[str, str]
    receiver: WebhookReceiver
    admin_url: str

    def dsn(self, user: str = "postgres", **params: str) -> str:
        return self.proxy.dsn(user=user, **params)

    def hold_url(self, hold_id: str, action: str = "") -> str:
        return f"{self.admin_url}/v1/holds/{hold_id}" + (f"/{action}" if action else "")

    def approve(self, hold_id: str, who: str = "bob", reason: str = "ok") -> Answer:
        return api("POST", self.hold_url(hold_id, "approve"), self.tokens[who], {"reason": reason})

    def deny(self, hold_id: str, who: str = "bob", reason: str = "no") -> Answer:
        return api("POST", self.hold_url(hold_id, "deny"), self.tokens[who], {"reason": reason})

    def show(self, hold_id: str, who: str = "carol") -> Answer:
        return api("GET", self.hold_url(hold_id), self.tokens[who])

    def wait_state(self, hold_id: str, state: str, timeout: float = 20) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            answer = self.show(hold_id)
            return answer.body if answer.status == 200 and answer.body["state"] == state else None

        found: dict[str, Any] = wait_until(
            probe, timeout=timeout, interval=0.1, what=f"{hold_id} {state}"
        )
        return found

    def metrics(self) -> Samples:
        """Every sample of /metrics as {(name, sorted labels): value}."""
        with urllib.request.urlopen(f"{self.admin_url}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        samples: Samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def audit_for(self, hold_id: str) -> list[dict[str, Any]]:
        return [r for r in self.proxy.audit_records() if r.get("hold_id") == hold_id]

    def wait_audit(self, hold_id: str, events: Iterable[str], timeout: float = 20) -> list[str]:
        wanted = set(events)

        def probe() -> list[str] | None:
            seen = [r["event"] for r in self.audit_for(hold_id)]
            return seen if wanted <= set(seen) else None

        found: list[str] = wait_until(probe, timeout=timeout, what=f"audit {wanted} {hold_id}")
        return found


def outcome_count(samples: Samples, outcome: str) -> float:
    return samples.get(("pgsentry_hold_outcomes_total", (("outcome", outcome),)), 0.0)


def holds_waiting(samples: Samples) -> float:
    return samples[("pgsentry_holds_waiting", ())]


def start_stage(
    pg: PgCluster,
    factory: ProxyFactory,
    workdir: Path,
    tokens: dict[str, str],
    approvers: Path,
    webhook_url: str | None = None,
) -> Stage:
    """Write the policy, start the receiver and pgsentry with every hold flag wired.

    `webhook_url` replaces the receiver's URL in pgsentry's settings (e.g. a dead port)."""
    workdir.mkdir(parents=True, exist_ok=True)
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    check = pgsentry_cli("check", str(policy))
    assert check.returncode == 0, check.stdout + check.stderr
    secret = new_webhook_secret()
    receiver = WebhookReceiver(secret).start()
    admin_port = free_port()
    admin_url = f"http://127.0.0.1:{admin_port}"
    proxy = factory(
        policies=policy,
        admin_port=admin_port,
        extra_args=[
            "--approvers-file",
            str(approvers),
            "--webhook-url",
            webhook_url or receiver.url,
            "--webhook-secret",
            secret,
            "--webhook-format",
            "json",
            "--public-url",
            admin_url,
        ],
    )
    return Stage(pg, proxy, tokens, receiver, admin_url)


# --------------------------------------------------------------------- the cluster, directly
def table_exists(pg: PgCluster, name: str) -> bool:
    return pg.psql(f"select to_regclass('public.{name}') is not null").strip() == "t"


def make_table(pg: PgCluster, name: str, owner: str | None = None) -> None:
    pg.psql(f"drop table if exists public.{name}; create table public.{name} (id int)")
    if owner:
        pg.psql(f"alter table public.{name} owner to {owner}")


def rows(pg: PgCluster, table: str) -> list[str]:
    return pg.psql(f"select id from public.{table} order by id").split()


def hold_id_from(text: str) -> str:
    m = HOLD_ID_RE.search(text)
    assert m, f"no hold id in {text!r}"
    return m.group(1)


# --------------------------------------------------------------------- a psycopg client
@dataclass(frozen=True)
class Notice:
    """The fields of one NoticeResponse, copied out of psycopg's short-lived Diagnostic."""

    severity: str
    sqlstate: str
    message_primary: str
    message_detail: str
    message_hint: str


class HeldClient:
    """A psycopg 3 connection whose notices are collected; `start` runs SQL in a thread."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.notices: list[Notice] = []
        self.conn.add_notice_handler(self._on_notice)

    def _on_notice(self, diag: psycopg.errors.Diagnostic) -> None:
        # The Diagnostic is valid only during the callback: copy what we need.
        self.notices.append(
            Notice(
                diag.severity or "",
                diag.sqlstate or "",
                diag.message_primary or "",
                diag.message_detail or "",
                diag.message_hint or "",
            )
        )

    def start(self, sql: str) -> Background[str | None]:
        """Execute `sql` in a background thread; the result is its command tag."""

        def run() -> str | None:
            return self.conn.execute(sql).statusmessage

        return Background(run)

    def wait_hold_id(self, timeout: float = 20) -> str:
        def probe() -> str | None:
            for n in list(self.notices):
                m = HOLD_ID_RE.search(n.message_primary)
                if m:
                    return m.group(1)
            return None

        found: str = wait_until(probe, timeout=timeout, what="hold notice")
        return found

    def notice_for(self, hold_id: str) -> Notice:
        return next(n for n in self.notices if hold_id in n.message_primary)

    def __enter__(self) -> HeldClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
