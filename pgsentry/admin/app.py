"""The admin HTTP listener (aiohttp): health, readiness, metrics and the holds API.

Owns the routes and their answers; the decisions themselves are `HoldRegistry`'s. Must not
import `pgsentry.proxy` or block the event loop (it shares the proxy's loop, which is also
what makes calling the registry from handlers safe).

    GET  /healthz                 200 while the process runs
    GET  /readyz                  200 when ready() is true, else 503
    GET  /metrics                 Prometheus text exposition
    GET  /v1/holds                waiting holds ({"holds": [...]}); ?all=1 adds recent ended
    GET  /v1/holds/{id}           one hold's state
    POST /v1/holds/{id}/approve   body (optional): {"reason": "...", "statement_sha256": "..."}
    POST /v1/holds/{id}/deny      same body

The /v1 routes need `Authorization: Bearer <approver token>` and answer 200 with the
hold's state, 400 bad body, 401 missing or wrong credential, 403 approver not allowed
(includes self-approval), 404 unknown hold, 409 hold not waiting / already approved by
this approver / statement hash mismatch. Errors are `{"error": "...", "hold": {...}?}`.
Every refused approve / deny is audited (`hold_approval_refused`, via the registry), never
with the token.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Literal

from aiohttp import web

from pgsentry import metrics
from pgsentry.holds import Approver, ApproverStore, HoldRegistry, Verdict

REGISTRY_KEY = web.AppKey("hold_registry", HoldRegistry)
APPROVERS_KEY = web.AppKey("approver_store", ApproverStore)
MAX_REASON = 2000
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, verdict: Verdict | None = None) -> web.Response:
    body: dict[str, object] = {"error": message}
    if verdict is not None and verdict.hold is not None:
        body["hold"] = verdict.hold.to_json()
    headers = {"WWW-Authenticate": 'Bearer realm="pgsentry"'} if status == 401 else None
    return web.json_response(body, status=status, headers=headers)


def _approver(request: web.Request) -> Approver | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return request.app[APPROVERS_KEY].authenticate(token)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _readyz(ready: Callable[[], bool]) -> _Handler:
    async def readyz(request: web.Request) -> web.Response:
        ok = ready()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    return readyz


async def metrics_handler(request: web.Request) -> web.Response:
    body, content_type = metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def list_holds(request: web.Request) -> web.Response:
    if _approver(request) is None:
        return _error(401, "missing or invalid bearer token")
    registry = request.app[REGISTRY_KEY]
    include_all = request.query.get("all", "") in ("1", "true", "yes")
    holds = registry.recent() if include_all else registry.waiting()
    return web.json_response({"holds": [h.to_json() for h in holds]})


async def show_hold(request: web.Request) -> web.Response:
    if _approver(request) is None:
        return _error(401, "missing or invalid bearer token")
    hold = request.app[REGISTRY_KEY].get(request.match_info["hold_id"])
    if hold is None:
        return _error(404, "no such hold")
    return web.json_response(hold.to_json())


def _decide(action: Literal["approve", "deny"]) -> _Handler:
    async def handler(request: web.Request) -> web.Response:
        approver = _approver(request)
        verdict = await _decide_once(request, action, approver)
        metrics.HOLD_API_REQUESTS.labels(action, str(verdict.status)).inc()
        if verdict.ok:
            assert verdict.hold is not None
            return web.json_response(verdict.hold.to_json())
        request.app[REGISTRY_KEY].record_refusal(
            request.match_info["hold_id"],
            action=action,
            status=verdict.status,
            reason=verdict.error,
            approver=approver.name if approver is not None else None,
            client_addr=request.remote,
        )
        return _error(verdict.status, verdict.error, verdict)

    return handler


async def _decide_once(
    request: web.Request, action: Literal["approve", "deny"], approver: Approver | None
) -> Verdict:
    if approver is None:
        return Verdict(401, "missing or invalid bearer token")
    reason, sha256 = "", None
    if request.can_read_body:
        raw = await request.read()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                return Verdict(400, "body must be JSON")
            if not isinstance(body, dict):
                return Verdict(400, "body must be a JSON object")
            reason_v, sha_v = body.get("reason", ""), body.get("statement_sha256")
            if not isinstance(reason_v, str) or len(reason_v) > MAX_REASON:
                return Verdict(400, f"reason must be a string of at most {MAX_REASON} chars")
            if sha_v is not None and not isinstance(sha_v, str):
                return Verdict(400, "statement_sha256 must be a string")
            reason, sha256 = reason_v, sha_v
    registry = request.app[REGISTRY_KEY]
    decide = registry.approve if action == "approve" else registry.deny
    return decide(request.match_info["hold_id"], approver, reason, statement_sha256=sha256)


def create_admin_app(
    *,
    ready: Callable[[], bool],
    registry: HoldRegistry | None = None,
    approvers: ApproverStore | None = None,
) -> web.Application:
    """The admin application. Without a registry the /v1 routes do not exist (404); with
    a registry but no approvers every /v1 request answers 401."""
    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", _readyz(ready))
    app.router.add_get("/metrics", metrics_handler)
    if registry is not None:
        app[REGISTRY_KEY] = registry
        app[APPROVERS_KEY] = approvers if approvers is not None else ApproverStore(None)
        app.router.add_get("/v1/holds", list_holds)
        app.router.add_get("/v1/holds/{hold_id}", show_hold)
        app.router.add_post("/v1/holds/{hold_id}/approve", _decide("approve"))
        app.router.add_post("/v1/holds/{hold_id}/deny", _decide("deny"))
    return app


async def start_admin(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app` on host:port (port 0 = any free port; see `bound_port`).

    Stop with `await runner.cleanup()`."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port the runner's first site listens on."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("admin listener is not bound to a TCP port")
