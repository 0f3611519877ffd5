"""A policy with hold rules and no way to approve: `pgsentry run` warns at startup (the
held statements would all be denied) and `pgsentry check` notes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pgsentry.devtools.proxyproc import wait_until
from pgsentry.devtools.testkit import ProxyFactory

pytestmark = pytest.mark.timeout(60)

HOLDING = """
version: 1
default: allow
rules:
  - id: hold-truncate
    action: hold
    match: {kinds: [truncate]}
"""
WARNING = "no approval channel: hold rule(s) hold-truncate"


def test_run_warns_when_hold_rules_have_no_approvers(
    proxy_factory: ProxyFactory, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(HOLDING)
    proxy = proxy_factory(policies=path)
    wait_until(lambda: proxy.log_contains(WARNING), timeout=10, what="the warning")
    assert "--approvers-file (PGSENTRY_APPROVERS_FILE)" in proxy.stderr


def test_run_without_hold_rules_does_not_warn(proxy_factory: ProxyFactory) -> None:
    proxy = proxy_factory()
    wait_until(lambda: proxy.log_contains("listening on"), timeout=10, what="startup")
    assert "no approval channel" not in proxy.stderr + proxy.stdout


def test_check_notes_hold_rules(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(HOLDING)
    argv = [sys.executable, "-m", "pgsentry", "check", str(tmp_path)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"note {tmp_path}: hold rule(s) hold-truncate" in proc.stdout
