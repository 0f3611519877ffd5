"""`pgsentry check` and `pgsentry explain` logic, on the shipped policies and on fixtures,
with the real statement analysis."""

from __future__ import annotations

import io
import re
import shutil
from datetime import datetime
from pathlib import Path

from policy_support import write

from pgsentry.policy import load_policy
from pgsentry.policy.commands import check_command, explain_command

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policies"


def run_check(*paths: Path) -> tuple[int, str]:
    out = io.StringIO()
    return check_command(list(paths), out), out.getvalue()


def test_shipped_policies_pass_their_own_tests() -> None:
    code, text = run_check(SHIPPED)
    assert code == 0, text
    assert re.search(
        r"^ok .*policies: 3 file\(s\), \d+ rule\(s\), \d+ test\(s\) passed, 0 failed$", text, re.M
    ), text
    assert len(load_policy(SHIPPED).tests) >= 60


def uncomment_examples(text: str) -> str:
    start = text.index("# --- example: migration role")
    end = text.index("# --- end of examples ---")
    block = "\n".join(
        line.removeprefix("# ").removeprefix("#") for line in text[start:end].splitlines()[1:]
    )
    return text[:start] + block + "\n" + text[end:]


def test_commented_exception_examples_are_valid_and_work(tmp_path: Path) -> None:
    shutil.copytree(SHIPPED, tmp_path / "policies")
    exceptions = tmp_path / "policies" / "10-exceptions.yaml"
    exceptions.write_text(uncomment_examples(exceptions.read_text()))
    code, text = run_check(tmp_path / "policies")
    assert code == 0, text
    ids = [r.id for r in load_policy(tmp_path / "policies").rules]
    assert ids[:4] == [
        "migrations-in-deploy-window",
        "maintenance-truncates-staging-tables",
        "dba-drop-with-approval",
        "allow-lo-read-fastpath",
    ]


WRONG = """
version: 1
default: allow
rules:
  - id: no-drop-table
    action: deny
    match: {kinds: [drop_table]}
tests:
  - name: right
    sql: DROP TABLE accounts
    expect: deny
    rule: no-drop-table
  - name: wrong expectation
    sql: DROP TABLE accounts
    expect: allow
  - sql: SELECT 1
    expect: allow
    rule: no-drop-table
"""


def test_check_fails_on_a_wrong_expectation_with_a_clear_diff(tmp_path: Path) -> None:
    path = write(tmp_path, WRONG)
    code, text = run_check(path)
    assert code == 1
    lines = text.splitlines()
    assert lines[0] == f"FAIL {path}:12: wrong expectation (wrong action)"
    assert "     sql:      DROP TABLE accounts" in lines
    assert "     expected: allow" in lines
    assert "     got:      deny by rule no-drop-table" in lines
    assert f"FAIL {path}:15: 'SELECT 1' (wrong rule)" in lines
    assert "     expected: allow by rule no-drop-table" in lines
    assert "     got:      allow by rule default" in lines
    assert lines[-1] == f"FAILED {path}: 1 file(s), 1 rule(s), 1 test(s) passed, 2 failed"


def test_check_invalid_policy_and_several_paths(tmp_path: Path) -> None:
    bad = write(tmp_path, "version: 1\ndefault: allow\nrulez: []\n", "bad.yaml")
    code, text = run_check(SHIPPED, bad)
    assert code == 2
    assert f"INVALID {bad}:3: rulez: unknown key, did you mean 'rules'?" in text
    assert "ok " in text  # the shipped policy was still checked


def test_check_shadow_expectations(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        default: allow
        rules:
          - {id: trial, action: hold, shadow: true, match: {kinds: [truncate]}}
        tests:
          - {sql: TRUNCATE t, expect: allow, rule: default, would: hold, would_rule: trial}
          - {sql: TRUNCATE t, expect: allow, would: allow}
        """,
    )
    code, text = run_check(path)
    assert code == 1
    assert "(wrong would)" in text and "expected: allow; would allow" in text
    assert "got:      allow by rule default; would hold by rule trial" in text


def explain(sql: str, policies: Path = SHIPPED, **kw: object) -> str:
    out = io.StringIO()
    args: dict[str, object] = {"user": "app", "database": "prod", **kw}
    assert explain_command(policies, sql, out=out, **args) == 0  # type: ignore[arg-type]
    return out.getvalue()


def test_explain_prints_facts_rules_and_decision() -> None:
    text = explain("SELECT 1; DROP TABLE public.accounts CASCADE", client_addr="10.0.0.5")
    assert "who: user=app database=prod application_name='' client_addr=10.0.0.5" in text
    assert "statement 2 of 2: drop_table (origin top)" in text
    assert "  relations:   public.accounts" in text
    assert "  cascade:     true" in text
    assert "  rules not about kind drop_table: no-drop-database, no-drop-schema," in text
    assert "  rule no-cascade (deny): no\n      cascade is False (wanted True)" in text  # stmt 1
    assert "  rule no-drop-table (deny): MATCH\n      kind drop_table in [drop_table]" in text
    assert "  default (allow): MATCH" in text  # statement 1 falls through to the default
    assert text.rstrip().endswith(
        "decision: DENY by rule no-drop-table: "
        "Dropping tables is not allowed through pgsentry; ask for an exception rule."
    )


def test_explain_shows_who_and_time_conditions(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        default: allow
        rules:
          - id: night-truncates-held
            action: hold
            match: {kinds: [truncate]}
            who:
              users: [etl]
              outside: [{days: [mon-fri], hours: '08:00-20:00', timezone: Europe/Paris}]
        """,
    )
    at = datetime.fromisoformat("2024-06-05T23:00:00+02:00")
    text = explain("TRUNCATE staging.load", path, user="etl", at=at)
    assert "user 'etl' in [etl]" in text
    assert "2024-06-05T23:00:00+02:00 is outside [mon,tue,wed,thu,fri 08:00-20:00" in text
    assert "decision: HOLD by rule night-truncates-held" in text
    assert "not cached" in text
    text = explain("TRUNCATE staging.load", path, user="bob", at=at)
    assert "user 'bob' not in [etl]" in text
    assert "decision: ALLOW by rule default" in text


def test_explain_unparseable_and_invalid_policy(tmp_path: Path) -> None:
    text = explain("SELEC 1")
    assert "could not parse" in text
    assert "decision: DENY by rule on_unparseable" in text
    out = io.StringIO()
    bad = write(tmp_path, "version: 1\n")
    assert explain_command(bad, "SELECT 1", user="a", database="b", out=out) == 2
    assert out.getvalue().startswith("INVALID ")
