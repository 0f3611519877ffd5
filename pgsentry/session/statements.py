"""Client statements: each Query, Parse, FunctionCall, Bind and Execute, judged and carried out.

Owns what a session does with a statement once it is judged (`judging`): send it upstream
with its in-flight record, send its refusal in its place (`refusals`), or stop at a hold
(`HoldRequest`; a held prepared statement at each Bind, shown `with_parameters`); and the
bookkeeping of the extended protocol (named statements, those judged at each Bind, portals,
the record of each Execute). Plain functions of the `Session` (`note_effects` is bound as
`Session._note_effects`, which the native Lane calls); no I/O: output goes to `to_server`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgsentry import metrics
from pgsentry.analysis.facts import Analysis
from pgsentry.policy.decision import Action, Decision
from pgsentry.session.decider import Verdict, verdict_facts
from pgsentry.session.judging import (
    count_decision,
    effects_sent,
    finish_judgement,
    judgement,
    server_text,
    strictest,
)
from pgsentry.session.records import Record, query_known, record_execute
from pgsentry.session.refusals import new_marker, refusal, refusal_for, refuse_simple
from pgsentry.session.state import HoldRequest
from pgsentry.wire import errors as E
from pgsentry.wire import protocol as P
from pgsentry.wire.protocol import parse_query

if TYPE_CHECKING:
    from pgsentry.session.session import Session

# Texts longer than this (characters) are judged on a worker thread (`HoldRequest.judge`):
# a full analysis costs up to a few µs per token, so 16 KiB is tens of milliseconds.
JUDGE_ON_LOOP_MAX = 16 * 1024

# An Execute of a statement the proxy never saw parsed (it cannot run: the server
# does not have it either, or it was prepared before a DISCARD the server reports).
UNKNOWN_STATEMENT = (
    "",
    Verdict(Decision(Action.ALLOW, reason="statement judged at Parse"), None, None),
)

# The counter's values, updated in place by the Query hot path (`query_known`).
STATEMENT_COUNTS = metrics.STATEMENTS.values


def on_query(session: Session, msg: bytes) -> None:
    """A Query: judge its text, then forward it, refuse it, or stop at a hold.

    A text of a shape already judged a plain ALLOW goes through `query_known` (native
    when built; the native Lane calls it straight from the transport).
    """
    if not query_known(
        msg,
        session.decider,
        session.status != b"I",
        session._inflight,
        session.to_server,
        STATEMENT_COUNTS,
    ):
        _judge_query(session, msg)


def _judge_query(session: Session, msg: bytes) -> None:
    """A Query `query_known` did not take (a new shape, a refusal, a hold...)."""
    carry_out(session, "simple", msg, server_text(session, parse_query(msg)), None)


def carry_out(
    session: Session, protocol: str, msg: bytes, sql: str, verdict: Verdict | None
) -> None:
    """Send a Query or Parse, refuse it or stop at a hold, judging it first unless
    `verdict` is given. A text longer than JUDGE_ON_LOOP_MAX stops the session instead
    (a HoldRequest with `judge`): analysing it takes long enough to stall every other
    session, so the proxy makes that decision apart and calls `resolve_judgement`."""
    if verdict is None:
        made = judgement(session, sql)
        if len(sql) > JUDGE_ON_LOOP_MAX:
            session.hold = HoldRequest(sql, None, protocol, msg, judge=made)
            return
        verdict = finish_judgement(session, sql, made.decide())
    if verdict.decision.action is Action.HOLD and protocol != "extended":
        verdict_facts(verdict)  # the hold's notification carries them
        session.hold = HoldRequest(sql, verdict, protocol, msg)
    elif protocol == "simple":
        send_unit(session, "simple", msg, sql, verdict, refusal_for(verdict))
    else:
        name, _ = P.parse_parse(msg[5:])
        send_parse(session, msg, name, sql, verdict)


def send_unit(
    session: Session, protocol: str, msg: bytes, text: str, verdict: Verdict, refused: bytes
) -> None:
    """Send a Query or FunctionCall (a batch of its own), or its refusal."""
    inflight = session._inflight
    rec = Record(protocol, text, verdict, inflight.open_batch)
    inflight.queue.append(rec)
    if refused:
        refuse_simple(session, refused)
    else:
        session.to_server.append(msg)
        note_effects(session, rec, text, verdict)
    inflight.sent_batches += 1


def note_effects(session: Session, rec: Record, sql: str, verdict: Verdict) -> None:
    analysis = verdict.analysis
    if analysis is not None and analysis.session_effects:
        rec.effects = analysis.session_effects
        effects_sent(session, sql, rec.effects, analysis)


def on_function_call(session: Session, msg: bytes) -> None:
    oid = P.parse_function_call_oid(msg[5:])
    decision = session.decider.decide_function_call(oid, session.principal)
    verdict = Verdict(decision, None, [{"kind": "function_call", "oid": oid}])
    if decision.action is Action.HOLD:
        session.hold = HoldRequest(f"<FunctionCall oid={oid}>", verdict, "function_call", msg)
        return
    _send_function_call(session, msg, verdict)


def _send_function_call(session: Session, msg: bytes, verdict: Verdict) -> None:
    send_unit(session, "function_call", msg, str(verdict.facts), verdict, refusal_for(verdict))


def on_parse(session: Session, msg: bytes) -> None:
    _, sql = P.parse_parse(msg[5:])
    carry_out(session, "extended", msg, server_text(session, sql), None)


def send_parse(session: Session, msg: bytes, name: str, sql: str, verdict: Verdict) -> None:
    """A Parse: an allowed statement runs at every Bind without judgement; a held one
    is parsed (which runs nothing) and judged, so held, at each of its Binds, where
    the approvers see its parameters; a denied one is refused now."""
    action = verdict.decision.action
    if action is not Action.DENY:
        if action is Action.ALLOW:
            session._statements[name] = (sql, verdict)
            session._guarded.pop(name, None)
        else:
            session._statements.pop(name, None)
            session._guarded[name] = (sql, verdict)
        session._queue(msg)
        return
    session._statements.pop(name, None)
    session._guarded.pop(name, None)
    audit_parse(session, name, sql, verdict)
    marker = new_marker(session, refusal(verdict.decision))
    session._queue(P.message(b"B", b"\0" + marker + b"\0\0\0\0\0\0\0"))
    session._skip_to_sync = True


def audit_parse(session: Session, name: str, sql: str, verdict: Verdict) -> None:
    d = verdict.decision
    session.audit.emit(
        "statement",
        session_id=session.session_id,
        protocol="extended",
        phase="parse",
        statement_name=name,
        text=sql,
        decision=d.action.value,
        would=d.would.value if d.would else None,
        would_rule=d.would_rule,
        rule=d.rule,
        facts=verdict_facts(verdict),
    )


def on_execute(session: Session, msg: bytes) -> None:
    """An Execute: the in-flight record of the statement behind its portal."""
    portal = P.parse_execute_portal(msg) if session._bound else ""
    bound = session._bound.get(portal)
    if bound is None:
        record_execute(
            msg,
            session._portals,
            session._statements,
            UNKNOWN_STATEMENT,
            session._inflight,
            session._note_effects,
        )
    else:  # a portal of a statement judged at its Bind
        sql, verdict, hold_id = bound
        inflight = session._inflight
        rec = Record(
            "extended",
            sql,
            verdict,
            inflight.sent_batches + 1,
            session._portals.get(portal, ""),
            portal,
        )
        rec.hold_id = hold_id
        inflight.queue.append(rec)
        note_effects(session, rec, sql, verdict)
    session._queue(msg)


def on_bind(session: Session, msg: bytes) -> None:
    """A Bind. Of a statement that runs without judgement: bookkept and forwarded.
    Of a statement judged at each execution (held at Parse, prepared before a policy
    reload, or prepared in SQL): judged now, so forwarded, refused, or held."""
    portal, stmt = P.parse_bind_names(msg)
    session._portals[portal] = stmt
    session._bound.pop(portal, None)
    if stmt in session._statements:
        session._queue(msg)
        return
    candidates = _bind_candidates(session, stmt)
    if not candidates:
        session._queue(msg)  # a name pgsentry never saw prepared: the server reports it
        return
    sql, verdict = strictest(session, candidates, candidates[0][0], None)
    assert verdict is not None
    count_decision(verdict)
    action = verdict.decision.action
    if action is Action.ALLOW:
        guarded = session._guarded.get(stmt)
        if guarded is not None and guarded[1].decision.action is Action.ALLOW:
            # allowed at Parse, judged again after a policy change: runs freely again
            del session._guarded[stmt]
            session._statements[stmt] = (sql, verdict)
        session._bound[portal] = (sql, verdict, None)
        session._queue(msg)
    elif action is Action.HOLD:
        verdict_facts(verdict)
        session.hold = HoldRequest(with_parameters(sql, msg), verdict, "bind", msg)
    else:
        refuse_bind(session, stmt, sql, verdict, refusal(verdict.decision))


def _bind_candidates(session: Session, stmt: str) -> list[tuple[str, Analysis | None]]:
    """The texts a Bind of `stmt` may run, with their analyses when known."""
    guarded = session._guarded.get(stmt)
    if guarded is not None:
        return [(guarded[0], guarded[1].analysis)]
    return list(session._sql_prepared.get(stmt, ()))


def refuse_bind(session: Session, stmt: str, sql: str, verdict: Verdict, refused: bytes) -> None:
    """The Bind is replaced by one the server rejects; the client gets `refused`."""
    audit_parse(session, stmt, sql, verdict)
    session._queue(P.message(b"B", b"\0" + new_marker(session, refused) + b"\0" * 7))
    session._skip_to_sync = True


_SHOWN_PARAMETERS = 50
_SHOWN_BYTES = 200


def with_parameters(sql: str, bind: bytes) -> str:
    """`sql` followed by a comment with the values a Bind gives its parameters (what the
    approvers of a held execution see): text values quoted, binary ones in hex, long ones
    cut. A Bind that cannot be read: the text alone (the server will reject it)."""
    try:
        values, formats = P.parse_bind_parameters(bind)
    except E.ProtocolError:
        return sql
    if not values:
        return sql
    shown: list[str] = []
    for i, (value, fmt) in enumerate(zip(values, formats, strict=True)):
        if i == _SHOWN_PARAMETERS:
            shown.append(f"... {len(values) - i} more")
            break
        if value is None:
            text = "NULL"
        elif fmt == 1:
            text = "0x" + value[:_SHOWN_BYTES].hex() + " (binary)"
        else:
            raw = value[:_SHOWN_BYTES].decode("utf-8", "replace").replace("'", "''")
            text = "'" + raw + "'"
        if value is not None and len(value) > _SHOWN_BYTES:
            text += f" (first {_SHOWN_BYTES} of {len(value)} bytes)"
        shown.append(f"${i + 1} = {text}")
    lines = "".join(f"\n--   {line.replace(chr(10), ' ')}" for line in shown)
    return f"{sql}\n-- parameters:{lines}"
