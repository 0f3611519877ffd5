"""Whole-text decisions: first match wins, most severe statement, shadow, unparseable."""

from __future__ import annotations

from pathlib import Path

from policy_support import APP, NOON, one, policy, stmt

from pgsentry.analysis.facts import Analysis, WhereClause
from pgsentry.policy import Action, HoldSpec

ORDERED = """
version: 1
default: allow
rules:
  - id: migrator-may-drop
    action: allow
    match: {kinds: [drop_table]}
    who: {users: [migrator]}
  - id: no-drop
    action: deny
    message: no drops here
    match: {kinds: [drop_table, drop_schema]}
  - id: never-reached-for-drops
    action: hold
    match: {kinds: [drop_table]}
  - id: hold-truncate
    action: hold
    match: {kinds: [truncate]}
    hold: {timeout: 60, approvals: 2, approvers: [alice, bob]}
"""


def test_first_matching_rule_wins(tmp_path: Path) -> None:
    p = policy(tmp_path, ORDERED)
    d = p.decide(one(stmt("drop_table", "t")), APP, NOON)
    assert (d.action, d.rule, d.message) == (Action.DENY, "no-drop", "no drops here")
    assert d.reason == "statement 1 of 1 (drop_table): rule no-drop"
    from dataclasses import replace

    d = p.decide(one(stmt("drop_table", "t")), replace(APP, user="migrator"), NOON)
    assert (d.action, d.rule) == (Action.ALLOW, "migrator-may-drop")
    d = p.decide(one(stmt("select", "t")), APP, NOON)
    assert (d.action, d.rule, d.reason) == (
        Action.ALLOW,
        "default",
        "statement 1 of 1 (select): no rule matched; policy default",
    )
    assert d.cacheable


def test_most_severe_statement_decides_nested_included(tmp_path: Path) -> None:
    p = policy(tmp_path, ORDERED)
    analysis = one(
        stmt("select"),
        stmt("truncate", "t", origin="do_block"),
        stmt("drop_schema", origin="function_body"),
        stmt("truncate", "u"),
    )
    d = p.decide(analysis, APP, NOON)
    assert (d.action, d.rule) == (Action.DENY, "no-drop")
    assert d.reason.startswith("statement 3 of 4 (drop_schema in function_body)")
    d = p.decide(one(stmt("select"), stmt("truncate", "t", origin="cte")), APP, NOON)
    assert (d.action, d.rule) == (Action.HOLD, "hold-truncate")
    assert d.hold == HoldSpec(60.0, 2, ("alice", "bob"), (), False)


def test_holds_in_one_text_merge_to_the_strictest(tmp_path: Path) -> None:
    p = policy(
        tmp_path,
        """
        version: 1
        default: allow
        rules:
          - id: a
            action: hold
            match: {kinds: [truncate]}
            hold: {timeout: 600, approvals: 1, approvers: [alice, bob], allow_self_approval: true}
          - id: b
            action: hold
            match: {kinds: [drop_index]}
            hold: {timeout: 60, approvals: 2, approvers: [bob, carol]}
          - id: c
            action: hold
            match: {kinds: [drop_view]}
            hold: {approvers: [dave]}
        """,
    )
    d = p.decide(one(stmt("truncate"), stmt("drop_index")), APP, NOON)
    assert (d.action, d.rule) == (Action.HOLD, "a")
    assert d.hold == HoldSpec(60.0, 2, ("bob",), (), False)
    d = p.decide(one(stmt("truncate"), stmt("drop_view")), APP, NOON)
    assert d.action is Action.DENY  # nobody may approve both
    assert d.hold is None


def test_unparseable_and_empty(tmp_path: Path) -> None:
    p = policy(tmp_path, ORDERED)
    d = p.decide(Analysis(parse_error="syntax error at or near SELEC"), APP, NOON)
    assert (d.action, d.rule) == (Action.DENY, "on_unparseable")
    assert "syntax error" in d.reason
    p2 = policy(tmp_path, "version: 1\ndefault: deny\non_unparseable: hold\n")
    d = p2.decide(Analysis(parse_error="x"), APP, NOON)
    assert (d.action, d.hold) == (Action.HOLD, HoldSpec())
    assert p2.decide(Analysis(), APP, NOON).action is Action.ALLOW  # empty query


def test_rule_shadow_never_changes_enforcement(tmp_path: Path) -> None:
    p = policy(
        tmp_path,
        """
        version: 1
        default: allow
        rules:
          - id: trial-no-delete
            action: deny
            shadow: true
            match: {kinds: [delete], where: present}
          - id: trial-hold-drop
            action: hold
            shadow: true
            match: {kinds: [drop_table]}
          - id: no-drop
            action: deny
            match: {kinds: [drop_table]}
        """,
    )
    delete = stmt("delete", "t", where=WhereClause.PRESENT)
    d = p.decide(one(delete), APP, NOON)
    assert (d.action, d.rule, d.would, d.would_rule) == (
        Action.ALLOW,
        "default",
        Action.DENY,
        "trial-no-delete",
    )
    # a shadow rule placed before an enforced deny does not open a hole
    d = p.decide(one(stmt("drop_table", "t")), APP, NOON)
    assert (d.action, d.rule, d.would, d.would_rule) == (
        Action.DENY,
        "no-drop",
        Action.HOLD,
        "trial-hold-drop",
    )
    d = p.decide(one(stmt("select")), APP, NOON)
    assert (d.would, d.would_rule) == (None, None)


def test_policy_shadow_enforces_nothing(tmp_path: Path) -> None:
    p = policy(
        tmp_path,
        """
        version: 1
        default: deny
        shadow: true
        rules:
          - id: selects-ok
            action: allow
            match: {kinds: [select]}
        """,
    )
    d = p.decide(one(stmt("drop_table", "t")), APP, NOON)
    assert (d.action, d.rule, d.would, d.would_rule) == (Action.ALLOW, None, Action.DENY, "default")
    assert d.reason.startswith("policy in shadow mode")
    d = p.decide(one(stmt("select")), APP, NOON)
    assert (d.action, d.would) == (Action.ALLOW, None)
    d = p.decide(Analysis(parse_error="x"), APP, NOON)
    assert (d.action, d.would, d.would_rule) == (Action.ALLOW, Action.DENY, "on_unparseable")
    d = p.decide_function_call(1, APP, NOON)
    assert (d.action, d.would) == (Action.ALLOW, Action.DENY)
