"""The native Record and respond (session/_records.c) and their Python twins agree."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgsentry import metrics
from pgsentry.analysis import analyze
from pgsentry.audit import members
from pgsentry.policy import load_policy
from pgsentry.policy.decision import Action, Decision, Principal
from pgsentry.session import records as R
from pgsentry.session.decider import PolicyHolder, SessionDecider, Verdict
from pgsentry.session.responses import SERVER_TABLE
from pgsentry.wire import protocol as P

HEAD = members(session_id="s-1")
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=30)  # lone surrogates too
NAMES = st.one_of(st.none(), ANY_TEXT)
VERDICTS = st.builds(
    lambda action, rule, would, facts: Verdict(Decision(action, rule, would=would), None, facts),
    st.sampled_from(Action),
    st.one_of(st.none(), st.sampled_from(["r1", "no-drop", 'q"\\'])),
    st.one_of(st.none(), st.sampled_from(Action)),
    st.one_of(st.none(), st.just([{"kind": "delete", "relations": ["public.t"]}])),
)
TAGS = st.lists(
    st.one_of(st.sampled_from(["SELECT 1", "INSERT 0 5", "CREATE TABLE", "UPDATE 7"]), ANY_TEXT),
    max_size=3,
)
ROWS = st.one_of(st.none(), st.integers(0, 2**70))


def test_native_records_are_built() -> None:
    # make test installs with a C compiler present; a silent fallback would hide a slow path
    assert R.NATIVE and R.Record is NATIVE.Record and R.respond is NATIVE.respond


NATIVE: Any = R._native  # the tests below compare it with the Python twins (None: not built)


def _pair(protocol: str, text: str, verdict: Verdict, batch: int, names: tuple[Any, Any]) -> Any:
    return R.PyRecord(protocol, text, verdict, batch, *names), NATIVE.Record(
        protocol, text, verdict, batch, *names
    )


@settings(max_examples=1500)
@given(
    st.sampled_from(["simple", "extended", "function_call"]),
    ANY_TEXT,
    VERDICTS,
    st.tuples(NAMES, NAMES),
    TAGS,
    ROWS,
    st.one_of(st.none(), ANY_TEXT),
    st.one_of(st.none(), ANY_TEXT),
    st.floats(0, 4e9),
    st.floats(0, 1e5),
)
def test_audit_line_equals_python_twin(
    protocol: str,
    text: str,
    verdict: Verdict,
    names: tuple[str | None, str | None],
    tags: list[str],
    rows: int | None,
    sqlstate: str | None,
    hold_id: str | None,
    wall: float,
    duration: float,
) -> None:
    lines = []
    for rec in _pair(protocol, text, verdict, 1, names):
        rec.wall = wall
        rec.tags.extend(tags)
        rec.rows = rows
        rec.sqlstate = sqlstate
        rec.hold_id = hold_id
        lines.append(rec._line(HEAD, duration))
    assert lines[0] == lines[1]
    json.loads(lines[1])


def test_audit_line_observes_the_duration() -> None:
    hist = metrics.STATEMENT_DURATION
    for rec in _pair("simple", "SELECT 1", Verdict(Decision(Action.ALLOW), None, None), 1, ()):
        before, total = sum(hist.counts), hist.sum
        rec.started -= 0.25
        record = json.loads(rec.audit_line(HEAD))
        assert sum(hist.counts) == before + 1
        assert 0.25 <= hist.sum - total < 5
        assert 250 <= record["duration_ms"] < 5000
        assert record["command_tag"] is None and record["rows"] is None


def test_record_fields_start_empty() -> None:
    rec = NATIVE.Record("extended", "SELECT $1", None, 3, "s1", "p1")
    assert (rec.protocol, rec.text, rec.batch, rec.statement_name, rec.portal) == (
        "extended",
        "SELECT $1",
        3,
        "s1",
        "p1",
    )
    assert rec.tags == [] and rec.rows is None and rec.sqlstate is None
    assert rec.hold_id is None and rec.effects == ()
    assert rec.started > 0 and rec.wall > 1e9


def test_record_fields_cannot_be_deleted() -> None:
    rec = NATIVE.Record("simple", "SELECT 1", None, 1)
    for name in ("rows", "sqlstate", "hold_id", "effects", "tags", "text", "batch", "wall"):
        with pytest.raises((AttributeError, TypeError)):
            delattr(rec, name)
    rec.rows = 3
    assert rec.rows == 3


@pytest.mark.parametrize(
    "args",
    [(), ("simple", "x", None), ("simple", "x", None, "1"), (1, "x", None, 1), ("s",) * 7],
)
def test_record_rejects_bad_arguments(args: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError):
        NATIVE.Record(*args)


# ------------------------------------------------------------------ respond

MASK = re.compile(rb'"ts":"[^"]*"|"duration_ms":[0-9.]+')


def _server_message(kind: str, value: Any) -> bytes:
    if kind == "C":
        return P.message(b"C", value.encode("utf-8", "surrogatepass") + b"\0")
    if kind == "Z":
        return P.message(b"Z", value)
    if kind == "S":
        return P.message(b"S", b"application_name\0x\0")
    if kind == "bad":
        return b"D\0\0\0\x02"
    return P.message(kind.encode(), value)


SERVER_MESSAGES = st.one_of(
    st.tuples(st.just("C"), TAGS.map(lambda tags: tags[0] if tags else "")),
    st.tuples(st.just("Z"), st.sampled_from([b"I", b"T", b"E", b"", b"IX"])),
    st.tuples(
        st.sampled_from(["I", "s", "S", "T", "D", "E", "1", "2", "n", "bad"]),
        st.binary(max_size=6),
    ),
)
UNITS = st.lists(
    st.tuples(
        st.sampled_from(["simple", "extended", "function_call"]),
        st.integers(1, 3),  # records in the batch (one unless extended)
        st.sampled_from(["plain", "effects", "hold"]),
    ),
    max_size=6,
)


def _inflight(make: Callable[..., Any], units: list[tuple[str, int, str]]) -> R.InFlight:
    inflight = R.InFlight()
    verdict = Verdict(Decision(Action.ALLOW, "r1"), None, None)
    for i, (protocol, count, extra) in enumerate(units):
        for j in range(count if protocol == "extended" else 1):
            names = ("s", "") if protocol == "extended" else ()
            rec = make(protocol, f"unit {i}.{j}", verdict, i + 1, *names)
            rec.wall = 1.7e9 + i
            if extra == "effects":
                rec.effects = (("prepare", "p"),)
            elif extra == "hold":
                rec.hold_id = f"h-{i}"
            inflight.queue.append(rec)
    inflight.sent_batches = len(units)
    return inflight


@settings(max_examples=1500)
@given(UNITS, st.lists(SERVER_MESSAGES, max_size=12), st.integers(0, 10_000), st.integers(0, 3))
def test_respond_equals_python_twin(
    units: list[tuple[str, int, str]],
    messages: list[tuple[str, Any]],
    cut: int,
    start: int,
) -> None:
    data = b"".join(_server_message(kind, value) for kind, value in messages)
    data = data[: cut % (len(data) + 1)]
    start = min(start, len(data))
    outcomes = []
    for make, respond in ((R.PyRecord, R.py_respond), (NATIVE.Record, NATIVE.respond)):
        inflight = _inflight(make, units)
        lines: list[bytes] = []
        others: list[Any] = []
        observed = sum(metrics.STATEMENT_DURATION.counts)
        result = respond(data, start, SERVER_TABLE, inflight, HEAD, lines.append, others.append)
        left = [(r.text, r.tags, r.rows) for r in inflight.queue]
        observed = sum(metrics.STATEMENT_DURATION.counts) - observed
        lines = [MASK.sub(b"", line) for line in lines]
        others = [rec.text for rec in others]
        outcomes.append((result, lines, others, inflight.done_batches, left, observed))
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][-1] == len(outcomes[1][1])  # one observation per audit line


def test_respond_rejects_bad_arguments() -> None:
    inflight = R.InFlight()
    args: list[Any] = [b"", 0, SERVER_TABLE, inflight, HEAD, print, print]
    for i, bad in ((0, "text"), (1, -1), (2, b"short"), (1, "0")):
        wrong = list(args)
        wrong[i] = bad
        with pytest.raises((TypeError, ValueError)):
            NATIVE.respond(*wrong)
    with pytest.raises(TypeError):
        NATIVE.respond(*args[:6])
    inflight.queue.append(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        NATIVE.respond(
            P.message(b"C", b"SELECT 1\0"), 0, SERVER_TABLE, inflight, HEAD, print, print
        )


def test_respond_past_the_end_does_nothing() -> None:
    data = P.message(b"C", b"SELECT 1\0")
    for respond in (R.py_respond, NATIVE.respond):
        inflight = R.InFlight()
        assert respond(data, 2**62, SERVER_TABLE, inflight, HEAD, print, print) == (2**62, None)


def test_respond_passes_on_callback_errors() -> None:
    inflight = _inflight(NATIVE.Record, [("simple", 1, "plain")])

    def fail(line: bytes) -> None:
        raise RuntimeError("sink closed")

    data = P.message(b"C", b"SELECT 1\0") + P.ready_for_query(b"I")
    with pytest.raises(RuntimeError, match="sink closed"):
        NATIVE.respond(data, 0, SERVER_TABLE, inflight, HEAD, fail, print)
    assert not inflight.queue and inflight.done_batches == 1


# ------------------------------------------------------------------ query_known

SHIPPED_POLICIES = Path(__file__).resolve().parents[2] / "policies"
KNOWN = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
    'SELECT "t"."id", "t"."name" FROM "public"."t" WHERE "t"."id" = {}',
    "UPDATE pgbench_accounts SET abalance = abalance + {} WHERE aid = 1;",
    "DELETE FROM t WHERE id = {}",
    "TRUNCATE t",  # refused by the shipped policy: never plain
    "BEGIN",
]
UNKNOWN = [
    "SELECT {} AS never_seen",
    "SELECT 'żółw', {}",
    "SELECT 1 -- {}",
    "DROP TABLE t{}",
    "SELECT E'\\\\', {}",
]


def _decider(state: str = "current") -> SessionDecider:
    """A decider that has judged the KNOWN shapes; `state`: "stale" after a policy reload,
    "empty" after a reset."""
    decider = SessionDecider(PolicyHolder(load_policy(SHIPPED_POLICIES)), analyze)
    for in_tx in (False, True):
        who = Principal("app", "db", "psql", "127.0.0.1", in_transaction=in_tx)
        for text in KNOWN:
            for value in ("1", "'x'"):
                verdict = decider.decide(text.format(value), who, True)
                plain = verdict.decision.action is Action.ALLOW
                assert (verdict.plain_labels is not None) is plain  # the decider marks them
    if state == "stale":
        decider.holder.policy = load_policy(SHIPPED_POLICIES)  # a reload: a new generation
    elif state == "empty":
        decider.reset()
    return decider


DECIDERS = {state: _decider(state) for state in ("current", "stale", "empty")}


QUERY_TEXTS = st.one_of(
    st.tuples(st.sampled_from(KNOWN + UNKNOWN), st.integers(0, 10**12).map(str)).map(
        lambda pair: pair[0].format(pair[1])
    ),
    ANY_TEXT,
)


@settings(max_examples=1500)
@given(
    QUERY_TEXTS,
    st.sampled_from(["whole", "no-nul", "not-q", "short"]),
    st.booleans(),
    st.sampled_from(["current", "stale", "empty"]),
)
def test_query_known_equals_python_twin(text: str, shape: str, in_tx: bool, state: str) -> None:
    msg = P.message(b"Q", text.encode("utf-8", "surrogatepass") + b"\0")
    msg = {"whole": msg, "no-nul": msg[:-1], "not-q": b"P" + msg[1:], "short": msg[:5]}[shape]
    outcomes = []
    decider = DECIDERS[state]
    for known in (R.py_query_known, NATIVE.query_known):
        inflight = R.InFlight()
        inflight.sent_batches = 7
        to_server: list[Any] = []
        counts: dict[tuple[str, ...], int] = {("allow", "r"): 2}
        done = known(msg, decider, in_tx, inflight, to_server, counts)
        queued = [(r.protocol, r.text, r.batch, r.verdict.decision) for r in inflight.queue]
        outcomes.append((done, queued, inflight.sent_batches, to_server, counts))
    assert outcomes[0] == outcomes[1]
    if outcomes[1][0]:
        assert outcomes[1][3] == [msg] and outcomes[1][2] == 8
        # Exactly what the decider itself answers for the text: an ALLOW, no session effects.
        who = Principal("app", "db", "psql", "127.0.0.1", in_transaction=in_tx)
        verdict = decider.decide(text, who, True)
        assert outcomes[1][1] == [("simple", text, 8, verdict.decision)]
        assert verdict.decision.action is Action.ALLOW
        assert verdict.analysis is None or not verdict.analysis.session_effects


def test_query_known_takes_plain_allows_only() -> None:
    decider = _decider()
    known = "SELECT abalance FROM pgbench_accounts WHERE aid = 42;"
    args: list[Any] = [decider, False, R.InFlight(), [], {}]
    assert NATIVE.query_known(P.query(known), *args)
    assert not NATIVE.query_known(P.query("TRUNCATE t"), *args)
    assert NATIVE.query_known(P.query("BEGIN"), *args)  # no constants: its own key
    assert not NATIVE.query_known(P.query("PREPARE q AS SELECT 1"), *args)  # never seen
    prepare = decider.decide("PREPARE q AS SELECT 1", Principal("app", "db", "psql", None), True)
    assert prepare.decision.action is Action.ALLOW and prepare.analysis is not None
    assert prepare.analysis.session_effects and prepare.plain_labels is None
    assert not NATIVE.query_known(P.query("PREPARE q AS SELECT 1"), *args)  # session effects
    assert not NATIVE.query_known(P.query("SELECT 42 AS never_seen"), *args)
    assert [r.text for r in args[2].queue] == [known, "BEGIN"]
    with pytest.raises(TypeError):
        NATIVE.query_known(P.query(known), *args[:4])
    with pytest.raises(TypeError):
        NATIVE.query_known(P.query(known).decode(), *args)


@pytest.mark.parametrize("implementation", ["python", "c"])
def test_query_known_stops_at_a_policy_reload(implementation: str) -> None:
    known = R.py_query_known if implementation == "python" else NATIVE.query_known
    allow_all = Path(__file__).resolve().parents[1] / "policies" / "allow_all.yaml"
    decider = SessionDecider(PolicyHolder(load_policy(allow_all)), analyze)
    who = Principal("app", "db", "psql", "127.0.0.1")
    verdict = decider.decide("TRUNCATE t", who, True)
    assert verdict.decision.action is Action.ALLOW and verdict.plain_labels is not None
    args: list[Any] = [decider, False, R.InFlight(), [], {}]
    assert known(P.query("TRUNCATE t"), *args)
    decider.holder.policy = load_policy(SHIPPED_POLICIES)
    assert not known(P.query("TRUNCATE t"), *args)
    assert decider.decide("TRUNCATE t", who, True).decision.action is not Action.ALLOW
    assert not known(P.query("TRUNCATE t"), *args)  # the new verdict is not plain


def test_slot_caches_follow_the_class() -> None:
    # The C code remembers where a __slots__ class keeps an attribute; another class, or the
    # same class changed, must go through normal attribute access again.
    decider = _decider()
    known = P.query("SELECT abalance FROM pgbench_accounts WHERE aid = 42;")
    plain = R.InFlight()
    assert NATIVE.query_known(known, decider, False, plain, None, {})  # learns InFlight
    assert NATIVE.query_known(known, decider, False, plain, None, {})  # from the cache
    assert plain.sent_batches == 2 and [r.batch for r in plain.queue] == [1, 2]

    class Counted(R.InFlight):
        __slots__ = ()

        @property  # type: ignore[override]
        def sent_batches(self) -> int:
            return 41

        @sent_batches.setter
        def sent_batches(self, value: int) -> None:
            self.done_batches = value  # where the assignment can be seen

    other = Counted()
    assert NATIVE.query_known(known, decider, False, other, None, {})
    assert other.queue[-1].batch == 42 and other.done_batches == 42
    slot = R.InFlight.__dict__["sent_batches"]
    try:
        R.InFlight.sent_batches = property(lambda self: 99, lambda self, value: None)  # type: ignore[assignment]
        assert NATIVE.query_known(known, decider, False, plain, None, {})
        assert plain.queue[-1].batch == 100
    finally:
        R.InFlight.sent_batches = slot  # type: ignore[assignment]
    assert plain.sent_batches == 2  # the slot itself was never written meanwhile
    assert NATIVE.query_known(known, decider, False, plain, None, {})
    assert plain.sent_batches == 3


# ------------------------------------------------------------------ execute_batch

PLAIN = Verdict(Decision(Action.ALLOW, "r1"), None, None, plain_labels=("allow", "r1"))
EFFECTS = Verdict(Decision(Action.ALLOW, "r2"), None, None)  # not plain: note_effects sees it
UNKNOWN_STATEMENT = ("", Verdict(Decision(Action.ALLOW), None, None))
NAME_BYTES = st.sampled_from([b"", b"s1", b"p1", b"\xff\xfe", b"s2"])


def _client_message(kind: str, first: bytes, second: bytes, terminated: bool) -> bytes:
    nul = b"\0" if terminated else b""
    if kind == "B":
        return P.message(b"B", first + b"\0" + second + nul + b"\0\0\0\0\0\0")
    if kind == "E":
        return P.message(b"E", first + nul + b"\0\0\0\0")
    if kind == "S":
        return P.message(b"S", b"")
    if kind == "D":
        return P.message(b"D", b"P" + first + b"\0")
    if kind == "P":
        return P.message(b"P", first + b"\0SELECT 1\0\0\0")
    return P.message(b"Q", b"SELECT 1\0")


CLIENT_MESSAGES = st.builds(
    _client_message,
    st.sampled_from(["B", "E", "S", "D", "P", "Q"]),
    NAME_BYTES,
    NAME_BYTES,
    st.sampled_from([True] * 9 + [False]),  # names terminated, mostly
)


@settings(max_examples=1500)
@given(st.lists(CLIENT_MESSAGES, max_size=7), st.integers(0, 400), st.booleans())
def test_execute_batch_equals_python_twin(msgs: list[bytes], cut: int, whole_batch: bool) -> None:
    from pgsentry.session.session import _CLIENT_TABLE

    if whole_batch:
        msgs = [*msgs, P.message(b"S", b"")]
    data = b"".join(msgs)
    data = data[: cut % (len(data) + 1)] if not whole_batch else data
    outcomes = []
    for batch in (R.py_execute_batch, NATIVE.execute_batch):
        portals = {"p0": "s1"}
        statements = {"s1": ("SELECT 1", PLAIN), "": ("SELECT 2", PLAIN), "s2": ("SET x", EFFECTS)}
        inflight = R.InFlight()
        inflight.sent_batches = 3
        to_server: list[Any] = []
        noted: list[Any] = []
        done = batch(
            data,
            _CLIENT_TABLE,
            portals,
            statements,
            UNKNOWN_STATEMENT,
            inflight,
            to_server,
            lambda rec, sql, verdict, noted=noted: noted.append((rec.portal, sql, verdict)),
        )
        queued = [
            (r.protocol, r.text, r.verdict, r.batch, r.statement_name, r.portal)
            for r in inflight.queue
        ]
        outcomes.append((done, portals, queued, inflight.sent_batches, to_server, noted))
    assert outcomes[0] == outcomes[1]
    if outcomes[1][0]:
        assert outcomes[1][4] == [data]


def test_execute_batch_of_a_prepared_statement() -> None:
    from pgsentry.session.session import _CLIENT_TABLE

    chunk = (
        P.message(b"B", b"\0s1\0\0\0\0\0\0\0")
        + P.message(b"E", b"\0\0\0\0\0")
        + P.message(b"S", b"")
    )
    inflight = R.InFlight()
    args: list[Any] = [{}, {"s1": ("SELECT 1", PLAIN)}, UNKNOWN_STATEMENT, inflight, [], print]
    assert NATIVE.execute_batch(chunk, _CLIENT_TABLE, *args)
    assert not NATIVE.execute_batch(chunk[:-5], _CLIENT_TABLE, *args)  # no Sync at the end
    assert args[0] == {"": "s1"} and inflight.sent_batches == 1
    (rec,) = inflight.queue
    assert (rec.text, rec.statement_name, rec.portal, rec.batch) == ("SELECT 1", "s1", "", 1)
    with pytest.raises(TypeError):
        NATIVE.execute_batch(chunk, _CLIENT_TABLE, *args[:5])
    with pytest.raises(TypeError):
        NATIVE.execute_batch(chunk, _CLIENT_TABLE, [], *args[1:])


@pytest.mark.parametrize("implementation", ["python", "c"])
def test_query_known_never_forwards_a_refusal_marked_plain(implementation: str) -> None:
    """Defence in depth: even a refused verdict wrongly marked plain is not forwarded."""
    known = R.py_query_known if implementation == "python" else NATIVE.query_known
    decider = _decider()
    assert decider.by_lexical is not None
    refused = Verdict(Decision(Action.DENY, "r"), None, None, plain_labels=("deny", "r"))
    decider.by_lexical[False]["TRUNCATE t"] = refused
    args: list[Any] = [decider, False, R.InFlight(), [], {}]
    assert not known(P.query("TRUNCATE t"), *args)
    assert not args[2].queue and not args[3] and not args[4]
