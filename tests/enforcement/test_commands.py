"""`pgsentry check` and `pgsentry explain` as a security team runs them: real subprocesses
of the command line on the shipped policies and on small policies written here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .support import SHIPPED_POLICIES

pytestmark = pytest.mark.timeout(60)


def _pgsentry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgsentry", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_shipped_policies_passes() -> None:
    proc = _pgsentry("check", str(SHIPPED_POLICIES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout


WRONG_EXPECTATION = """\
version: 1
default: allow
rules:
  - id: no-truncate
    action: deny
    match: {kinds: [truncate]}
tests:
  - {sql: "TRUNCATE accounts", expect: deny, rule: no-truncate}
  - name: somebody expected truncate to pass
    sql: TRUNCATE orders
    expect: allow
"""


def test_check_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(WRONG_EXPECTATION)
    proc = _pgsentry("check", str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout
    assert "somebody expected truncate to pass" in proc.stdout
    assert "expected: allow" in proc.stdout
    assert "got:      deny by rule no-truncate" in proc.stdout
    assert "1 failed" in proc.stdout


def test_check_invalid_policy_exits_2_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(WRONG_EXPECTATION.replace("action: deny", "action: nope"))
    proc = _pgsentry("check", str(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "policy.yaml:5" in proc.stdout + proc.stderr


def test_explain_names_the_rule() -> None:
    proc = _pgsentry("explain", "--policies", str(SHIPPED_POLICIES), "DROP TABLE accounts")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "drop_table" in out
    assert "rule no-drop-table (deny): MATCH" in out
    assert "decision: DENY by rule no-drop-table" in out


def test_explain_hidden_statement_and_who() -> None:
    proc = _pgsentry(
        "explain", "--policies", str(SHIPPED_POLICIES), "--user", "app", "--database", "prod",
        "--application-name", "web", "SELECT 1; DO $$ BEGIN TRUNCATE accounts; END $$",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "user=app database=prod application_name='web'" in proc.stdout
    assert "truncate (origin do_block)" in proc.stdout
    assert "decision: DENY by rule no-truncate" in proc.stdout
    allowed = _pgsentry("explain", "--policies", str(SHIPPED_POLICIES), "SELECT 1")
    assert "decision: ALLOW by rule default" in allowed.stdout


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--at", "tomorrow"], "--at: not an ISO 8601 time"),
        (["--at", "2024-06-01T03:00:00"], "--at: give a time zone offset"),
        (["--client-addr", "banana"], "--client-addr: not an IP address"),
    ],
    ids=["at-not-a-time", "at-naive", "client-addr"],
)
def test_explain_bad_argument_is_one_line_exit_2(args: list[str], complaint: str) -> None:
    proc = _pgsentry("explain", "--policies", str(SHIPPED_POLICIES), *args, "select 1")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pgsentry explain: {complaint}"), lines


def test_explain_at_with_offset_and_ipv6_client() -> None:
    args = ["--at", "2024-06-01T03:00:00Z", "--client-addr", "::1"]
    proc = _pgsentry("explain", "--policies", str(SHIPPED_POLICIES), *args, "select 1")
    assert proc.returncode == 0, proc.stderr


def test_explain_into_a_closed_pipe_prints_no_traceback() -> None:
    sql = "select 1;" * 3000  # far more output than a pipe buffer holds
    argv = [sys.executable, "-m", "pgsentry", "explain", "--policies", str(SHIPPED_POLICIES), sql]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
