"""`pgsentry check` and `pgsentry explain`: the policy commands, as plain functions.

Owns what these commands print and return; cli.py parses arguments and calls them.
Must not parse command-line arguments nor exit the process.

Exit codes: 0 = fine, 1 = a policy test case failed, 2 = a policy file is invalid.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from pgsentry.analysis import analyze
from pgsentry.analysis.facts import StatementFacts
from pgsentry.policy.conditions import Context
from pgsentry.policy.decision import Decision, Principal
from pgsentry.policy.engine import LocatedTest, Policy
from pgsentry.policy.load import PolicyError, load_policy


def _outcome(action: str, rule: str | None) -> str:
    return f"{action} by rule {rule}" if rule else action


def _who_line(who: Principal, at: datetime) -> str:
    return (
        f"user={who.user} database={who.database} "
        f"application_name={who.application_name!r} "
        f"client_addr={who.client_addr or 'local'} "
        f"in_transaction={str(who.in_transaction).lower()} at={at.isoformat()}"
    )


def run_test(policy: Policy, test: LocatedTest) -> list[str]:
    """Run one embedded test case; return the lines describing a failure (empty: pass)."""
    case = test.case
    who = Principal(
        user=case.who.user,
        database=case.who.database,
        application_name=case.who.application_name,
        client_addr=case.who.client_addr,
        in_transaction=case.who.in_transaction,
    )
    at = case.at or datetime.now(UTC)
    analysis = analyze(case.sql, standard_conforming_strings=case.standard_conforming_strings)
    d = policy.decide(analysis, who, at)
    wrong: list[str] = []
    if d.action.value != case.expect:
        wrong.append("action")
    if case.rule is not None and d.rule != case.rule:
        wrong.append("rule")
    would = (d.would or d.action).value
    if case.would is not None and would != case.would:
        wrong.append("would")
    would_rule = d.would_rule or d.rule
    if case.would_rule is not None and would_rule != case.would_rule:
        wrong.append("would_rule")
    if not wrong:
        return []
    expected = _outcome(case.expect, case.rule)
    if case.would is not None or case.would_rule is not None:
        expected += f"; would {_outcome(case.would or '?', case.would_rule)}"
    got = _outcome(d.action.value, d.rule)
    if case.would is not None or case.would_rule is not None:
        got += f"; would {_outcome(would, would_rule)}"
    return [
        f"FAIL {test.source}: {case.name or repr(case.sql)} (wrong {', '.join(wrong)})",
        f"     sql:      {' '.join(case.sql.split())}",
        f"     who:      {_who_line(who, at)}",
        f"     expected: {expected}",
        f"     got:      {got}",
        f"     because:  {d.reason}",
    ]


def check_command(paths: list[Path], out: TextIO) -> int:
    """Validate each policy path (a file or a directory, each its own policy) and run
    the test cases it carries. Returns 0, 1 (a test failed) or 2 (invalid policy)."""
    status = 0
    for path in paths:
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            print(f"INVALID {exc}", file=out)
            status = 2
            continue
        failed = 0
        for test in policy.tests:
            lines = run_test(policy, test)
            if lines:
                failed += 1
                print("\n".join(lines), file=out)
        passed = len(policy.tests) - failed
        files = len(policy.source_paths)
        print(
            f"{'FAILED' if failed else 'ok'} {path}: {files} file(s), {len(policy.rules)} "
            f"rule(s), {passed} test(s) passed, {failed} failed",
            file=out,
        )
        if policy.hold_rule_ids:
            print(f"note {path}: {holds_need_approvers(policy.hold_rule_ids)}", file=out)
        if failed and status == 0:
            status = 1
    return status


def holds_need_approvers(rule_ids: tuple[str, ...]) -> str:
    """What `pgsentry check` notes and `pgsentry run` warns about a policy with hold rules."""
    return (
        f"hold rule(s) {', '.join(rule_ids)}: held statements are released only through "
        "the admin listener by approvers from --approvers-file (PGSENTRY_APPROVERS_FILE); "
        "without both, every statement these rules hold is denied"
    )


def _facts_lines(i: int, n: int, f: StatementFacts) -> list[str]:
    rels = ", ".join(
        f"{r}" + ("" if r.schema is not None else " (unqualified)") for r in f.relations
    )
    return [
        f"statement {i} of {n}: {f.kind} (origin {f.origin})",
        f"  text:        {' '.join(f.text.split()) or '-'}",
        f"  relations:   {rels or '-'}",
        f"  where:       {f.where.value if f.where is not None else '-'}",
        f"  cascade:     {str(f.cascade).lower()}",
        f"  dynamic_sql: {str(f.dynamic_sql).lower()}",
        f"  functions:   {', '.join(f.functions) or '-'}",
        f"  objects:     {', '.join(f.objects) or '-'}",
    ]


def _decision_line(d: Decision) -> str:
    line = f"decision: {d.action.value.upper()}"
    if d.rule:
        line += f" by rule {d.rule}"
    if d.message:
        line += f": {d.message}"
    if d.would is not None:
        line += f" (shadow: would {d.would.value} by {d.would_rule})"
    if d.hold is not None:
        h = d.hold
        line += f" (hold: {h.approvals} approval(s), timeout {h.timeout_seconds:g}s)"
    if not d.cacheable:
        line += " (depends on time / transaction state: not cached)"
    return line


def explain_command(
    policies: Path,
    sql: str,
    *,
    user: str,
    database: str,
    application_name: str = "",
    client_addr: str | None = None,
    in_transaction: bool = False,
    at: datetime | None = None,
    standard_conforming_strings: bool = True,
    out: TextIO,
) -> int:
    """Print the facts of each statement in `sql`, every rule consulted for it and why it
    matched or not, and the final decision. Returns 0, or 2 for an invalid policy."""
    try:
        policy = load_policy(policies)
    except PolicyError as exc:
        print(f"INVALID {exc}", file=out)
        return 2
    when = at or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    who = Principal(user, database, application_name, client_addr, in_transaction)
    print(
        f"policy: {policies} (generation {policy.generation}, {len(policy.rules)} rules"
        f"{', SHADOW MODE' if policy.shadow else ''})",
        file=out,
    )
    print(f"who: {_who_line(who, when)}", file=out)
    analysis = analyze(sql, standard_conforming_strings=standard_conforming_strings)
    if analysis.parse_error is not None:
        print(f"could not parse: {analysis.parse_error}", file=out)
        print(f"  => on_unparseable: {policy.on_unparseable.action.value}", file=out)
    n = len(analysis.statements)
    for i, facts in enumerate(analysis.statements, 1):
        print("\n".join(_facts_lines(i, n, facts)), file=out)
        steps = policy.trace(Context(facts, who, when))
        other = [s.rule.id for s in steps if s.failed_on == "kinds" and len(s.why) == 1]
        if other:
            print(f"  rules not about kind {facts.kind}: {', '.join(other)}", file=out)
        for step in steps:
            if step.rule.id in other:
                continue
            rule = step.rule
            label = f"rule {rule.id}" if rule.id != "default" else "default"
            tag = "MATCH" if step.matched else "no"
            shadow = " shadow" if rule.shadow else ""
            print(f"  {label} ({rule.action.value}{shadow}): {tag}", file=out)
            for reason in step.why:
                print(f"      {reason}", file=out)
    print(_decision_line(policy.decide(analysis, who, when)), file=out)
    return 0
