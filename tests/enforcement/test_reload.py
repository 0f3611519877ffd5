"""Policy hot reload on a running proxy: SIGHUP and the file watcher swap in a valid policy
(a statement denied a moment ago is allowed, on the same connection: no stale cached
decision); a broken file never replaces the running policy, the proxy stays up, and the
error names the file and line on stderr and in the audit log. At start-up a broken policy
stops pgsentry with exit code 2.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsentry.devtools import ProxyProcess, ProxyStartError
from pgsentry.devtools.testkit import ProxyFactory

pytestmark = pytest.mark.timeout(60)

DENY = """\
version: 1
default: allow
on_unparseable: deny
rules:
  - id: no-truncate
    action: deny
    match: {kinds: [truncate]}
"""

ALLOW_SCRATCH = """\
version: 1
default: allow
on_unparseable: deny
rules:
  - id: scratch-may-be-emptied
    action: allow
    match: {kinds: [truncate], relations: ["*.scratch"]}
  - id: no-truncate
    action: deny
    match: {kinds: [truncate]}
"""

UNKNOWN_KEY = DENY + "    colour: red\n"  # line 8
YAML_ERROR = DENY.replace("[truncate]}", "[truncate}")  # line 7

Conn = psycopg.Connection[tuple[object, ...]]


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # the watcher never sees half a file


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    path = directory / "50-rules.yaml"
    _write(path, DENY)
    return path


@pytest.fixture
def reload_proxy(proxy_factory: ProxyFactory, policy_file: Path) -> ProxyProcess:
    return proxy_factory(policies=policy_file.parent)


def _session(proxy: ProxyProcess) -> Conn:
    conn = psycopg.connect(proxy.dsn(), autocommit=True)
    conn.execute("CREATE TEMP TABLE scratch (x int)")
    return conn


def _truncate_allowed(conn: Conn) -> bool:
    try:
        conn.execute("TRUNCATE scratch")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def _reload_events(proxy: ProxyProcess, result: str) -> list[dict[str, Any]]:
    """policy_reload records in the audit log and any file it was rotated to."""
    records: list[dict[str, Any]] = []
    for log in sorted(proxy.audit_log.parent.glob(proxy.audit_log.name + "*")):
        for line in log.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line still being written
            if record.get("event") == "policy_reload" and record.get("result") == result:
                records.append(record)
    return records


def test_sighup_reloads_a_valid_policy(reload_proxy: ProxyProcess, policy_file: Path) -> None:
    with _session(reload_proxy) as conn:
        assert not _truncate_allowed(conn)
        assert not _truncate_allowed(conn)  # now a cached decision
        reload_proxy.audit_log.rename(reload_proxy.audit_log.with_name("audit.jsonl.1"))
        _write(policy_file, ALLOW_SCRATCH)
        reload_proxy.signal(signal.SIGHUP)
        reload_proxy.wait_until(lambda: _reload_events(reload_proxy, "success"), what="reload")
        assert _truncate_allowed(conn)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TEMP TABLE other (x int); TRUNCATE other")
    # SIGHUP also reopened the audit log: a new file took the records after it
    reload_proxy.wait_until(reload_proxy.audit_log.exists, what="audit log reopened")
    assert reload_proxy.is_alive


def test_a_statement_prepared_before_a_reload_is_judged_again_at_its_next_execution(
    reload_proxy: ProxyProcess, policy_file: Path
) -> None:
    _write(policy_file, ALLOW_SCRATCH)
    reload_proxy.signal(signal.SIGHUP)
    reload_proxy.wait_until(lambda: _reload_events(reload_proxy, "success"), what="reload")
    with _session(reload_proxy) as conn:
        # protocol-level prepared statements (Parse once, then Bind / Execute)
        conn.execute("TRUNCATE scratch", prepare=True)
        conn.execute("TRUNCATE scratch", prepare=True)
        conn.execute("INSERT INTO scratch VALUES (1)")
        _write(policy_file, DENY)
        reload_proxy.signal(signal.SIGHUP)
        reload_proxy.wait_until(
            lambda: len(_reload_events(reload_proxy, "success")) >= 2, what="second reload"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE scratch", prepare=True)
        assert conn.execute("SELECT count(*) FROM scratch").fetchone() == (1,)
        # a statement the new policy allows runs freely again after its judgement
        for _ in range(3):
            assert conn.execute("SELECT 1", prepare=True).fetchone() == (1,)


def test_file_watcher_reloads_without_a_signal(
    reload_proxy: ProxyProcess, policy_file: Path
) -> None:
    with _session(reload_proxy) as conn:
        assert not _truncate_allowed(conn)
        _write(policy_file, ALLOW_SCRATCH)
        reload_proxy.wait_until(lambda: _truncate_allowed(conn), timeout=10, what="watcher")
    # the audit writer batches its writes: wait for the record rather than race it
    reload_proxy.wait_until(
        lambda: _reload_events(reload_proxy, "success"), timeout=10, what="reload audited"
    )


@pytest.mark.parametrize(
    ("broken", "where", "what"),
    [(UNKNOWN_KEY, "50-rules.yaml:8", "colour"), (YAML_ERROR, "50-rules.yaml:7", "YAML")],
    ids=["unknown-key", "yaml-syntax"],
)
@pytest.mark.parametrize("trigger", ["sighup", "watcher"])
def test_broken_policy_keeps_the_old_one(
    reload_proxy: ProxyProcess,
    policy_file: Path,
    broken: str,
    where: str,
    what: str,
    trigger: str,
) -> None:
    with _session(reload_proxy) as conn:
        assert not _truncate_allowed(conn)
        _write(policy_file, broken)
        if trigger == "sighup":
            reload_proxy.signal(signal.SIGHUP)
        failures = reload_proxy.wait_until(
            lambda: _reload_events(reload_proxy, "failure"), timeout=10, what="failure"
        )
        assert where in failures[0]["error"] and what in failures[0]["error"], failures
        assert reload_proxy.wait_until(lambda: reload_proxy.log_contains(where), what="stderr")
        assert "policy reload failed" in reload_proxy.stderr
        # the running policy still serves, old connections and new ones
        assert not _truncate_allowed(conn)
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with _session(reload_proxy) as conn:
        assert not _truncate_allowed(conn)
        # and a fixed file is picked up again
        _write(policy_file, ALLOW_SCRATCH)
        reload_proxy.wait_until(lambda: _truncate_allowed(conn), timeout=10, what="fixed")
    assert reload_proxy.is_alive


def test_broken_policy_at_start_up_exits_2(proxy_factory: ProxyFactory, policy_file: Path) -> None:
    _write(policy_file, UNKNOWN_KEY)
    proxy = proxy_factory(start=False, policies=policy_file.parent)
    with pytest.raises(ProxyStartError) as info:
        proxy.start(timeout=20)
    assert proxy.wait(10) == 2
    assert "50-rules.yaml:8" in str(info.value)
    assert "colour" in str(info.value)
