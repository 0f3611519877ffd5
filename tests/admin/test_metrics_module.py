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
