"""The listener and the table of live sessions: accept, cancel routing, holds, shutdown.

Owns the listening socket, the map from the BackendKeyData the proxy hands out to
the session that owns it (so a CancelRequest reaches exactly that session's upstream
backend), carrying out holds through the hold registry, the process that analyses texts
too long for the event loop (`analyse_apart`), and graceful shutdown.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import secrets
import ssl
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any

from pgsentry import metrics
from pgsentry.analysis import Analysis, analyze
from pgsentry.audit import AuditLog
from pgsentry.holds import HoldLimitExceeded, HoldRegistry, HoldState
from pgsentry.policy.decision import Decision, HoldSpec
from pgsentry.session.decider import PolicyHolder, SessionDecider, Verdict
from pgsentry.session.session import Session
from pgsentry.wire import errors as E

from .connection import ClientConnection
from .upstream import UpstreamError, UpstreamTarget, send_cancel

log = logging.getLogger(__name__)


class Proxy:
    """Accepts clients and wires each to a fresh upstream connection."""

    def __init__(
        self,
        *,
        upstream: UpstreamTarget,
        policy: PolicyHolder,
        audit: AuditLog,
        client_tls: ssl.SSLContext | None = None,
        client_cert_der: bytes | None = None,
        require_client_tls: bool = False,
        holds: HoldRegistry | None = None,
        approve_hint: str = "",
    ) -> None:
        self.upstream = upstream
        self.policy = policy
        self.audit = audit
        self.client_tls = client_tls
        self.client_cert_der = client_cert_der
        self.require_client_tls = require_client_tls
        self.holds = holds
        self.approve_hint = approve_hint
        self.connections: set[ClientConnection] = set()
        self._keys: dict[int, ClientConnection] = {}  # by the secret of proxy_key
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)
        self._server: asyncio.Server | None = None
        self._analysis_pool: ProcessPoolExecutor | None = None

    async def start(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientConnection(self), host, port, reuse_address=True, backlog=4096
        )
        return self._server

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def policy_changed(self) -> None:
        """A new policy is in force: every session judges its prepared statements again
        at their next Bind (on the event loop, like every session change)."""
        for conn in self.connections:
            if conn.session is not None:
                conn.session.guard_statements()

    def new_session_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def new_session(self, conn: ClientConnection) -> Session:
        # The client gets the server's own process ID (so pg_backend_pid(), notifications
        # and pg_stat_activity agree with it) and a secret of the proxy's, unique here.
        while True:
            secret = secrets.randbits(32)
            if secret not in self._keys:
                break
        self._keys[secret] = conn
        return Session(
            session_id=conn.session_id,
            decider=SessionDecider(self.policy, analyze),
            audit=self.audit,
            proxy_key=(0, secret),
            client_addr=conn.client_addr,
            client_tls=conn.tls,
        )

    def forget(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        if conn.session is not None:
            self._keys.pop(conn.session.proxy_key[1], None)

    # ------------------------------------------------------------------ cancel
    def cancel(self, pid: int, secret: int) -> asyncio.Task[None] | None:
        """Act on a CancelRequest. Returns the task forwarding it upstream, if any: the
        client's cancel connection stays open until it is done, as PostgreSQL's does until
        the backend was signalled (libpq and asyncpg send their next query only then)."""
        conn = self._keys.get(secret)
        if conn is None or conn.session is None or conn.session.proxy_key != (pid, secret):
            metrics.CANCEL_REQUESTS.labels("unknown_key").inc()
            return None
        if conn.hold_id is not None and self.holds is not None:
            self.holds.cancel(conn.hold_id)
            metrics.CANCEL_REQUESTS.labels("forwarded").inc()
            return None
        upstream_key = conn.session.upstream_key
        if upstream_key is None:
            return None
        task = asyncio.get_running_loop().create_task(self._send_cancel(*upstream_key))
        self.track(task)
        return task

    async def _send_cancel(self, pid: int, secret: int) -> None:
        try:
            await send_cancel(self.upstream, pid, secret)
            metrics.CANCEL_REQUESTS.labels("forwarded").inc()
        except (UpstreamError, OSError) as exc:
            metrics.CANCEL_REQUESTS.labels("failed").inc()
            log.warning("cancel request could not be forwarded: %s", exc)

    # ------------------------------------------------------------------ holds
    async def run_hold(
        self, conn: ClientConnection, sql: str, verdict: Verdict, decision: Decision
    ) -> str:
        """Hold a statement until approved, denied, expired or cancelled; return the outcome."""
        session = conn.session
        assert session is not None
        if self.holds is None:
            return "denied by pgsentry: holds need an approval channel (none is configured)"
        spec = decision.hold or HoldSpec()
        try:
            hold = self.holds.create(
                statement=sql,
                analysis_summary={
                    "kinds": sorted({f["kind"] for f in verdict.facts or []}),
                    "facts": verdict.facts or [],
                },
                principal=session.principal,
                session_id=session.session_id,
                rule=decision.rule or "default",
                spec=spec,
                message=decision.message,
            )
        except HoldLimitExceeded as exc:
            return f"denied by pgsentry: too many statements are held ({exc})"
        conn.hold_id = hold.id
        hint = self.approve_hint.format(hold_id=hold.id) if self.approve_hint else ""
        conn.notice(
            E.notice_response(
                f"pgsentry: statement held for approval (hold {hold.id}, rule {hold.rule}); "
                f"waiting up to {int(spec.timeout_seconds)}s",
                detail=decision.message,
                hint=hint or f"Ask an approver to run: pgsentry holds approve {hold.id}",
            )
        )
        result = await hold.wait()
        outcome = result.outcome
        if outcome is HoldState.APPROVED:
            return "approved"
        if outcome is HoldState.DENIED:
            who = ", ".join(result.approvers) or "an approver"
            reason = f": {result.reason}" if result.reason else ""
            return f"denied by {who}{reason}"
        if outcome is HoldState.EXPIRED:
            return "expired"
        return "cancelled"

    def abandon_hold(self, hold_id: str) -> None:
        if self.holds is not None:
            self.holds.abandon(hold_id)

    # ------------------------------------------------------------------ long texts
    async def analyse_apart(self, sql: str, scs: bool | None) -> Analysis:
        """Analyse a very long text in a process of its own: parsing one statement of
        megabytes builds its whole tree in one call, which holds the interpreter (and so
        every session) for seconds and takes about a hundred times the text in memory.
        One worker, so such texts queue behind each other, not in front of other sessions;
        a fresh process for each, so its memory goes back when it is done."""
        if self._analysis_pool is None:
            self._analysis_pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                max_tasks_per_child=1,
            )
        job = partial(analyze, sql, standard_conforming_strings=scs)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._analysis_pool, job)
        except BrokenProcessPool:
            self._analysis_pool = None  # the next long text gets a new pool
            raise

    # ------------------------------------------------------------------ shutdown
    async def shutdown(self, grace: float) -> None:
        """Stop accepting; let statements in flight finish for up to `grace` seconds."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.shutdown()
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn._fatal(E.ADMIN_SHUTDOWN, "terminating connection: pgsentry is shutting down")
        pool, self._analysis_pool = self._analysis_pool, None
        if pool is not None:
            # A running analysis would hold up the exit: end its process (the executor has
            # no public way before Python 3.14's terminate_workers()).
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.sleep(0)
