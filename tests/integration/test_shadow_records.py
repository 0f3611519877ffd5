"""Shadow mode through the real proxy: the audit record and the statements metric name the
rule that would have decided, for a whole-policy shadow and for a shadow rule."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsentry.devtools.proxyproc import wait_until
from pgsentry.devtools.testkit import ProxyFactory

pytestmark = pytest.mark.timeout(60)

PROBE = "SELECT 4242 AS shadow_probe"

WHOLE = """
version: 1
default: deny
shadow: true
rules:
  - id: hold-the-probe
    action: hold
    match: {kinds: [select]}
"""

ONE_RULE = """
version: 1
default: allow
rules:
  - id: trial-deny-selects
    action: deny
    shadow: true
    match: {kinds: [select]}
"""


@pytest.mark.parametrize(
    ("policy", "would", "rule", "would_rule"),
    [
        (WHOLE, "hold", None, "hold-the-probe"),
        (ONE_RULE, "deny", "default", "trial-deny-selects"),
    ],
    ids=["shadow-policy", "shadow-rule"],
)
def test_shadow_names_the_rule_that_would_decide(
    proxy_factory: ProxyFactory,
    tmp_path: Path,
    policy: str,
    would: str,
    rule: str | None,
    would_rule: str,
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    proxy = proxy_factory(policies=path)
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute(PROBE).fetchone() == (4242,)

    def record() -> dict[str, Any] | None:
        found = [r for r in proxy.audit_records() if r.get("text") == PROBE]
        return found[0] if found else None

    rec = wait_until(record, what="the probe's statement record")
    assert (rec["decision"], rec["would"], rec["rule"]) == ("allow", would, rule)
    assert rec["would_rule"] == would_rule
    url = f"http://{proxy.host}:{proxy.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    sample = f'pgsentry_statements_total{{decision="shadow_{would}",rule="{would_rule}"}} 1.0'
    assert sample in text
