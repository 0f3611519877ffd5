"""Composition root of `pgsentry run`: builds every part from Settings and runs them.

Owns wiring only: policy + watcher, audit log, hold registry + notifier + approvers,
the proxy listener, the admin listener, and the signals (SIGTERM/SIGINT stop,
SIGHUP reloads policy and reopens the audit log). No business logic here.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys

from pgsentry import metrics, native
from pgsentry.admin.app import create_admin_app, start_admin
from pgsentry.admin.webhooks import WebhookNotifier, WebhookTarget
from pgsentry.audit import open_audit_log
from pgsentry.config import Settings
from pgsentry.holds import ApproversFileError, ApproverStore, HoldRegistry
from pgsentry.policy import Policy, PolicyError, load_policy
from pgsentry.policy.commands import holds_need_approvers
from pgsentry.policy.watch import PolicyWatcher
from pgsentry.proxy.server import Proxy
from pgsentry.proxy.tls import certificate_der, server_context, upstream_context
from pgsentry.proxy.upstream import UpstreamTarget
from pgsentry.session.decider import PolicyHolder

log = logging.getLogger("pgsentry")


class StartupError(Exception):
    """Configuration that cannot start (exit code 2)."""


def load_initial_policy(settings: Settings) -> Policy:
    try:
        return load_policy(settings.policies)
    except PolicyError as exc:
        raise StartupError(f"invalid policy: {exc}") from exc


async def serve(settings: Settings) -> int:
    policy = load_initial_policy(settings)
    holder = PolicyHolder(policy)
    metrics.POLICY_GENERATION.set(policy.generation)
    try:
        approvers = ApproverStore(settings.approvers_file) if settings.approvers_file else None
    except ApproversFileError as exc:
        raise StartupError(
            f"invalid setting --approvers-file (PGSENTRY_APPROVERS_FILE): {exc}"
        ) from exc
    try:
        audit = open_audit_log(settings.audit_log, **metrics.audit_log_hooks())
    except OSError as exc:
        raise StartupError(f"invalid setting --audit-log (PGSENTRY_AUDIT_LOG): {exc}") from exc
    metrics.watch_audit_log(audit)
    loop = asyncio.get_running_loop()

    notifier = None
    if settings.webhook_urls:
        targets = [
            WebhookTarget(url=u, secret=settings.webhook_secret, format=settings.webhook_format)
            for u in settings.webhook_urls
        ]
        notifier = WebhookNotifier(targets, audit=audit, public_base_url=settings.public_url)
    # Without approvers nobody could ever release a hold: refuse such statements at once.
    holds = (
        HoldRegistry(audit=audit, notifier=notifier, approvers=approvers)
        if approvers is not None
        else None
    )
    base = settings.public_url or (
        f"http://{settings.admin_listen}" if settings.admin_listen else ""
    )
    hint = (
        f"Approve with: pgsentry holds approve {{hold_id}} --url {base}  "
        f"(or POST {base}/v1/holds/{{hold_id}}/approve)"
        if base
        else ""
    )

    client_tls = None
    client_cert_der = None
    if settings.tls_cert_file and settings.tls_key_file:
        try:
            client_tls = server_context(settings.tls_cert_file, settings.tls_key_file)
            client_cert_der = certificate_der(settings.tls_cert_file)
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise StartupError(
                f"invalid setting --tls-cert-file/--tls-key-file (PGSENTRY_TLS_CERT_FILE): {exc}"
            ) from exc
    host, port = settings.upstream_address
    try:
        upstream_tls = upstream_context(settings.upstream_sslmode, settings.upstream_ssl_ca_file)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise StartupError(
            f"invalid setting --upstream-ssl-ca-file (PGSENTRY_UPSTREAM_SSL_CA_FILE): {exc}"
        ) from exc
    target = UpstreamTarget(
        host, port, settings.upstream_sslmode, upstream_tls, settings.connect_timeout_seconds
    )
    proxy = Proxy(
        upstream=target,
        policy=holder,
        audit=audit,
        client_tls=client_tls,
        client_cert_der=client_cert_der,
        require_client_tls=settings.tls_require,
        holds=holds,
        approve_hint=hint,
    )

    def warn_holds(p: Policy) -> None:
        if p.hold_rule_ids and (approvers is None or settings.admin_address is None):
            log.warning("no approval channel: %s", holds_need_approvers(p.hold_rule_ids))

    warn_holds(policy)

    def on_reload(new: Policy) -> None:
        warn_holds(new)
        holder.policy = new
        proxy.policy_changed()
        metrics.POLICY_RELOADS.labels("success").inc()
        metrics.POLICY_GENERATION.set(new.generation)
        audit.emit("policy_reload", generation=new.generation, result="success")
        log.info("policy reloaded (generation %d)", new.generation)

    def on_error(exc: PolicyError) -> None:
        metrics.POLICY_RELOADS.labels("failure").inc()
        audit.emit("policy_reload", result="failure", error=str(exc))
        log.error("policy reload failed, keeping the running policy: %s", exc)

    watcher = PolicyWatcher(
        settings.policies,
        policy,
        on_reload=on_reload,
        on_error=on_error,
        interval=settings.policy_watch_seconds or 1.0,
    )

    listen_host, listen_port = settings.listen_address
    try:
        await proxy.start(listen_host, listen_port)
    except OSError as exc:
        raise StartupError(f"invalid setting --listen (PGSENTRY_LISTEN): {exc}") from exc
    runner = None
    if settings.admin_address is not None:
        admin = create_admin_app(ready=lambda: proxy.listening, registry=holds, approvers=approvers)
        try:
            runner = await start_admin(admin, *settings.admin_address)
        except OSError as exc:
            raise StartupError(
                f"invalid setting --admin-listen (PGSENTRY_ADMIN_LISTEN): {exc}"
            ) from exc
    if settings.policy_watch_seconds:
        watcher.start()
    log.info(
        "pgsentry listening on %s, upstream %s, policy generation %d",
        settings.listen,
        target.display,
        policy.generation,
    )
    log.info(native.summary())

    stop = asyncio.Event()

    def reload_now() -> None:
        try:
            watcher.reload()
        except PolicyError as exc:
            on_error(exc)
        audit.reopen()

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_now)
    await stop.wait()
    log.info("shutting down: letting statements in flight finish")
    await proxy.shutdown(settings.shutdown_grace_seconds)
    await watcher.stop()
    if holds is not None:
        holds.close()
    if notifier is not None:
        await notifier.aclose()
    if runner is not None:
        await runner.cleanup()
    await audit.aclose()
    return 0


def run(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop

        return int(uvloop.run(serve(settings)))
    except StartupError as exc:
        print(f"pgsentry: {exc}", file=sys.stderr)
        return 2
