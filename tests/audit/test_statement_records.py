"""A finished statement's audit record (session/records.py): fields, values and key order."""

from __future__ import annotations

import json

import pytest

from pgsentry.audit import members
from pgsentry.policy.decision import Action, Decision
from pgsentry.session.decider import Verdict
from pgsentry.session.records import PyRecord, Record

HEAD = members(session_id="s-1")
FACTS = [{"kind": "delete", "relations": ["public.t"], "where": "none"}]
IMPLEMENTATIONS = pytest.mark.parametrize("make", [Record, PyRecord], ids=["native", "python"])


@IMPLEMENTATIONS
@pytest.mark.parametrize("hold_id", [None, "h-7"])
@pytest.mark.parametrize("names", [(None, None), ("s1", ""), ("", "p\udcff")])
@pytest.mark.parametrize("would", [None, Action.DENY])
def test_keys_come_in_the_documented_order(
    make: type[PyRecord],
    hold_id: str | None,
    names: tuple[str | None, str | None],
    would: Action | None,
) -> None:
    would_rule = "r0" if would is not None else None
    decision = Decision(Action.ALLOW, "r1", would=would, would_rule=would_rule)
    verdict = Verdict(decision, None, FACTS)
    rec = make("extended", "DELETE FROM t", verdict, 1, *names)
    rec.tags.extend(["DELETE 3", "SELECT 2"])
    rec.rows = 5
    rec.hold_id = hold_id
    record = json.loads(rec.audit_line(HEAD))
    expected = ["ts", "event", "session_id", "protocol", "text", "started_at", "duration_ms"]
    expected += ["command_tag", "rows", "sqlstate", "decision", "rule"]
    named = zip(("statement_name", "portal"), names, strict=True)
    expected += [key for key, value in named if value is not None]
    expected += ["would", "would_rule"] if would is not None else []
    expected += ["facts"] + (["hold_id"] if hold_id else [])
    assert list(record) == expected
    assert record["event"] == "statement"
    assert record["command_tag"] == "DELETE 3; SELECT 2" and record["rows"] == 5
    assert record["sqlstate"] is None and record["decision"] == "allow"
    assert record["facts"] == FACTS
    if names[0] is not None:
        assert (record["statement_name"], record["portal"]) == names
    if would is not None:
        assert (record["would"], record["would_rule"]) == ("deny", "r0")
    if hold_id:
        assert record["hold_id"] == hold_id


@IMPLEMENTATIONS
def test_tail_is_built_once_per_verdict(make: type[PyRecord]) -> None:
    verdict = Verdict(Decision(Action.DENY, "no-drop"), None, None)
    first = make("simple", "DROP TABLE t", verdict, 1)
    first.sqlstate = "42501"
    line = first.audit_line(HEAD)
    assert verdict.audit_tail is not None
    cached = verdict.audit_tail
    second = make("simple", "DROP TABLE u", verdict, 2)
    second.audit_line(HEAD)
    assert verdict.audit_tail is cached
    record = json.loads(line)
    assert record["sqlstate"] == "42501" and record["rule"] == "no-drop"
    assert "facts" not in record and record["command_tag"] is None and record["rows"] is None
