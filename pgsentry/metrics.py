"""Every Prometheus metric pgsentry exports, in one module and one registry.

Owns the metric objects, their names, help texts and label sets, and `render()` for the
admin listener's `/metrics`. Other modules import the metric they update and call
`.inc()` / `.set()` / `.observe()` on it. Must not do I/O, and must not grow unbounded
label sets: every label below takes values from a small fixed vocabulary, except `rule`,
which takes policy rule ids (bounded by the policy files) and `none` for no rule.

Naming follows https://prometheus.io/docs/practices/naming/: the `pgsentry_` prefix,
base units (seconds, bytes), `_total` on counters. prometheus-client appends `_total`
to counters itself, so the names passed below leave it off.

The registry is our own (`REGISTRY`), not the process-global default, so that importing
pgsentry in another program never collides with its metrics; it still carries the
process and platform collectors, as a standalone exporter would.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Protocol, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from pgsentry import __version__

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

NO_RULE = "none"
"""The `rule` label value for a statement that no rule matched."""

BUILD_INFO = Info("pgsentry_build", "pgsentry version.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})

# --- connections and traffic (proxy) ---------------------------------------------------

CONNECTIONS = Counter(
    "pgsentry_connections",
    "Client connections accepted since start.",
    registry=REGISTRY,
)
CONNECTIONS_ACTIVE = Gauge(
    "pgsentry_connections_active",
    "Client connections currently open.",
    registry=REGISTRY,
)


class HotPathCounter(Collector):
    """A labelled counter for the per-statement hot path: `inc()` is one dict update.

    prometheus-client's Counter takes a lock per increment; this one is only ever
    updated from the event loop thread and read (copied) at scrape time.
    """

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.values: dict[tuple[str, ...], int] = {}

    def inc(self, labels: tuple[str, ...]) -> None:
        self.values[labels] = self.values.get(labels, 0) + 1

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.values.items()):
            family.add_metric(list(labels), value)
        yield family


STATEMENTS = HotPathCounter(
    "pgsentry_statements",
    "SQL texts (Query or Parse) decided, by decision (allow, deny, hold, shadow_deny, "
    "shadow_hold) and matching rule id (`none` when no rule matched).",
    ("decision", "rule"),
)
REGISTRY.register(STATEMENTS)


_go_float = cast(Callable[[float], str], floatToGoString)  # the `le` label format (untyped)


class HotPathHistogram(Collector):
    """An unlabelled histogram for the per-statement hot path: `observe()` is one bisect and
    two additions (prometheus-client's Histogram walks its buckets under a lock).

    Only ever updated from the event loop thread; exported at scrape time with
    prometheus-client's own HistogramMetricFamily (cumulative buckets, `+Inf`, sum, count).
    """

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        if list(buckets) != sorted(set(buckets)):
            raise ValueError("buckets must be strictly increasing")
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(buckets)
        # Updated in place, never rebound: the native hot path (session/_records.c) holds
        # these two lists. The sum is kept in a one-element list for the same reason.
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sums = [0.0]

    @property
    def sum(self) -> float:
        return self.sums[0]

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sums[0] += amount

    def collect(self) -> Iterable[Metric]:
        counts, total = list(self.counts), self.sums[0]
        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            running += count
            cumulative.append((_go_float(bound), running))
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=cumulative, sum_value=total
        )


STATEMENT_DURATION = HotPathHistogram(
    "pgsentry_statement_duration_seconds",
    "Time from forwarding a statement upstream to its CommandComplete or ErrorResponse.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0),
)
REGISTRY.register(STATEMENT_DURATION)
PROTOCOL_ERRORS = Counter(
    "pgsentry_protocol_errors",
    "Malformed protocol input that ended a connection, by side (client, server).",
    ["side"],
    registry=REGISTRY,
)
BYTES = Counter(
    "pgsentry_bytes",
    "Bytes relayed, by direction (client_to_server, server_to_client).",
    ["direction"],
    registry=REGISTRY,
)
UPSTREAM_CONNECT_FAILURES = Counter(
    "pgsentry_upstream_connect_failures",
    "Failed attempts to open a connection to the upstream PostgreSQL server.",
    registry=REGISTRY,
)
CANCEL_REQUESTS = Counter(
    "pgsentry_cancel_requests",
    "CancelRequest packets received, by result (forwarded, unknown_key, failed).",
    ["result"],
    registry=REGISTRY,
)

# --- policy -----------------------------------------------------------------------------

POLICY_RELOADS = Counter(
    "pgsentry_policy_reloads",
    "Policy reload attempts, by result (success, failure).",
    ["result"],
    registry=REGISTRY,
)
POLICY_GENERATION = Gauge(
    "pgsentry_policy_generation",
    "Generation number of the policy set in force; increases by one per successful load.",
    registry=REGISTRY,
)

# --- audit ------------------------------------------------------------------------------

AUDIT_BACKLOG = Gauge(
    "pgsentry_audit_backlog_records",
    "Audit records accepted but not yet written to the sink.",
    registry=REGISTRY,
)
AUDIT_RECORDS = Counter(
    "pgsentry_audit_records",
    "Audit records written to the sink.",
    registry=REGISTRY,
)
AUDIT_WRITE_ERRORS = Counter(
    "pgsentry_audit_write_errors",
    "Failed writes to the audit sink.",
    registry=REGISTRY,
)

# --- holds and approvals ----------------------------------------------------------------

HOLDS_WAITING = Gauge(
    "pgsentry_holds_waiting",
    "Held statements currently waiting for a decision.",
    registry=REGISTRY,
)
HOLDS_CREATED = Counter(
    "pgsentry_holds_created",
    "Statements held, by rule id.",
    ["rule"],
    registry=REGISTRY,
)
HOLD_OUTCOMES = Counter(
    "pgsentry_hold_outcomes",
    "Holds that ended, by outcome (approved, denied, expired, cancelled, abandoned).",
    ["outcome"],
    registry=REGISTRY,
)
HOLD_DECISION_SECONDS = Histogram(
    "pgsentry_hold_decision_seconds",
    "Time from a statement being held to the end of its hold, by outcome.",
    ["outcome"],
    buckets=(1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0),
    registry=REGISTRY,
)
HOLD_API_REQUESTS = Counter(
    "pgsentry_hold_api_requests",
    "Approve / deny requests on the admin API, by action (approve, deny) and HTTP status.",
    ["action", "status"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "pgsentry_webhook_deliveries",
    "Webhook delivery attempts, by result: success (2xx), retry (failed attempt that will "
    "be retried), failure (gave up after the last attempt), dropped (hold ended first).",
    ["result"],
    registry=REGISTRY,
)


# Export every fixed-vocabulary series from the start (at 0), so that rate() and alerts
# see them before the first event. (`decision`/`rule` and `rule` series appear when used.)
for _side in ("client", "server"):
    PROTOCOL_ERRORS.labels(_side)
for _direction in ("client_to_server", "server_to_client"):
    BYTES.labels(_direction)
for _result in ("forwarded", "unknown_key", "failed"):
    CANCEL_REQUESTS.labels(_result)
for _result in ("success", "failure"):
    POLICY_RELOADS.labels(_result)
for _outcome in ("approved", "denied", "expired", "cancelled", "abandoned"):
    HOLD_OUTCOMES.labels(_outcome)
    HOLD_DECISION_SECONDS.labels(_outcome)
for _result in ("success", "retry", "failure", "dropped"):
    WEBHOOK_DELIVERIES.labels(_result)


class _Backlogged(Protocol):
    @property
    def backlog(self) -> int: ...


def watch_audit_log(audit: _Backlogged) -> None:
    """Make `pgsentry_audit_backlog_records` read `audit.backlog` at each scrape."""
    AUDIT_BACKLOG.set_function(lambda: audit.backlog)


def audit_log_hooks() -> dict[str, Callable[..., object]]:
    """Keyword arguments for `pgsentry.audit.AuditLog` / `open_audit_log` that count
    written records and write errors (the hooks run on the writer thread; prometheus-client
    metrics are thread-safe)."""

    def written(n: int) -> None:
        AUDIT_RECORDS.inc(n)

    def write_error() -> None:
        AUDIT_WRITE_ERRORS.inc()

    return {"on_written": written, "on_write_error": write_error}


def render() -> tuple[bytes, str]:
    """The text exposition of every metric above and its content type, for `/metrics`."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    """Current value of one sample (0.0 if it was never touched). For tests and the CLI."""
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)
