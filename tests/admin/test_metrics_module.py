"""pgsentry.metrics: names, fixed label series, and the audit log hooks with the real log."""

from __future__ import annotations

from pgsentry import __version__, metrics
from pgsentry.audit import AuditLog, MemorySink


def test_exposition_names_follow_conventions() -> None:
    raw, content_type = metrics.render()
    text = raw.decode()
    assert content_type.startswith("text/plain")
    types = dict(
        line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE pgsentry_")
    )
    assert types["pgsentry_connections_total"] == "counter"
    assert types["pgsentry_hold_decision_seconds"] == "histogram"
    assert types["pgsentry_holds_waiting"] == "gauge"
    for name, kind in types.items():
        assert (kind == "counter") == name.endswith("_total"), name
        assert not name.endswith("_total_total")
    assert f'pgsentry_build_info{{version="{__version__}"}} 1.0' in text
    assert 'pgsentry_hold_outcomes_total{outcome="expired"}' in text
    assert 'pgsentry_webhook_deliveries_total{result="failure"}' in text


async def test_audit_log_hooks_count_records_and_backlog() -> None:
    before = metrics.sample("pgsentry_audit_records_total")
    audit = AuditLog(MemorySink(), **metrics.audit_log_hooks())  # type: ignore[arg-type]
    metrics.watch_audit_log(audit)
    for i in range(5):
        audit.emit("test_event", i=i)
    assert audit.flush(timeout=10)
    assert metrics.sample("pgsentry_audit_records_total") == before + 5
    assert metrics.sample("pgsentry_audit_backlog_records") == 0
    await audit.aclose()


def test_hot_path_histogram_matches_prometheus_client() -> None:
    """The statement duration histogram exports what prometheus-client's Histogram would."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    bounds = (0.001, 0.005, 0.1, 1.0)
    ours = metrics.HotPathHistogram("h_seconds", "help", bounds)
    registry = CollectorRegistry()
    registry.register(ours)
    reference_registry = CollectorRegistry()
    reference = Histogram("h_seconds", "help", buckets=bounds, registry=reference_registry)
    for amount in (0.0, 0.0005, 0.001, 0.0010001, 0.004, 0.1, 0.7, 1.0, 2.5, 1e9):
        ours.observe(amount)
        reference.observe(amount)

    def samples(reg: CollectorRegistry) -> list[str]:
        return [
            line
            for line in generate_latest(reg).decode().splitlines()
            if line.startswith("h_seconds_") and not line.startswith("h_seconds_created")
        ]

    assert samples(registry) == samples(reference_registry)
    assert 'h_seconds_bucket{le="0.001"} 3.0' in samples(registry)
    assert 'h_seconds_bucket{le="+Inf"} 10.0' in samples(registry)


def test_statement_duration_is_exported_as_a_histogram() -> None:
    text = metrics.render()[0].decode()
    assert "# TYPE pgsentry_statement_duration_seconds histogram" in text
    assert 'pgsentry_statement_duration_seconds_bucket{le="+Inf"}' in text
