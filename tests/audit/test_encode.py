"""The hot-path statement encoder gives the record the generic encoder would."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pgsentry.audit import members, serialize, statement_line

HEAD = {"session_id": "a1b2-7", "protocol": "simple"}


def generic(
    started_at: float,
    duration: float,
    text: str,
    tag: str | None,
    rows: int | None,
    sqlstate: str | None,
    tail: dict[str, object],
) -> dict[str, object]:
    fields: dict[str, object] = {
        **HEAD,
        "text": text,
        "started_at": started_at,
        "duration_ms": round(duration * 1_000_000) / 1000,
        "command_tag": tag,
        "rows": rows,
        "sqlstate": sqlstate,
        **tail,
    }
    parsed: dict[str, object] = json.loads(serialize(started_at + duration, "statement", fields))
    return parsed


@given(
    started_at=st.floats(min_value=0, max_value=4e9),
    duration=st.floats(min_value=0, max_value=1e5),
    text=st.text(st.characters(exclude_categories=())),
    tag=st.none() | st.text(max_size=30),
    rows=st.none() | st.integers(min_value=0, max_value=2**63),
    sqlstate=st.none() | st.text(min_size=5, max_size=5),
    facts=st.lists(st.dictionaries(st.text(max_size=8), st.text(max_size=8)), max_size=3),
)
def test_statement_line_equals_serialize(
    started_at: float,
    duration: float,
    text: str,
    tag: str | None,
    rows: int | None,
    sqlstate: str | None,
    facts: list[dict[str, str]],
) -> None:
    tail: dict[str, object] = {"decision": "allow", "rule": None, "facts": facts}
    line = statement_line(
        started_at,
        duration,
        members(session_id=HEAD["session_id"]),
        b"," + members(protocol=HEAD["protocol"]),
        text,
        tag,
        rows,
        sqlstate,
        b"," + members(**tail),
    )
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = json.loads(line)
    expected = generic(started_at, duration, text, tag, rows, sqlstate, tail)
    assert list(record) == list(expected)  # the same keys in the same order
    # started_at is written with microsecond precision
    assert abs(record.pop("started_at") - expected.pop("started_at")) <= 0.5e-6 + 1e-9 * started_at
    assert record == expected


def test_lone_surrogates_and_unicode_survive() -> None:
    for text in ("SELECT '\udcff'", "SELECT 'żółw'", 'SELECT "\\n\t\x00"'):
        record = json.loads(
            statement_line(1.5, 0.25, members(session_id="s"), b"", text, "SELECT 1", 1, None, b"")
        )
        assert record["text"] == text
        assert record["ts"] == "1970-01-01T00:00:01.750000Z"
        assert record["duration_ms"] == 250.0


def test_members_is_the_inside_of_an_object() -> None:
    assert members() == b""
    assert json.loads(b"{" + members(a=1, b=None, c=["x"], d="\udcff") + b"}") == {
        "a": 1,
        "b": None,
        "c": ["x"],
        "d": "\udcff",
    }
