"""What a session's judgement of a client text depends on, and what it leaves behind.

Owns how the server will read a text (`server_text`: the session's client_encoding; `unreadable`:
why pgsentry may read it otherwise; `scs_now`: standard_conforming_strings when it is
settled), the `Judgement` made with them (`judgement`, `finish_judgement`), the bodies an
SQL-level prepared name may stand for (`session_effects`, `effects_sent`,
`effects_confirmed`), and pgsentry_statements_total (`count_decision`). Plain functions of
the `Session`; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pgsentry import metrics
from pgsentry.analysis.facts import Analysis
from pgsentry.policy.decision import Action, Decision
from pgsentry.session.decider import Judgement, Verdict, decision_labels
from pgsentry.session.state import Phase

if TYPE_CHECKING:
    from pgsentry.session.session import Session

_MAX_BODIES = 8  # bodies remembered per SQL-level prepared name
_HIGH_BEFORE_BACKSLASH = re.compile(r"[^\x00-\x7f]\\")  # characters, not SQL


def judgement(session: Session, sql: str) -> Judgement:
    """The decision on `sql` as the session stands now (made now, or apart)."""
    assert session._principals is not None
    scs = scs_now(session)
    return Judgement(
        sql,
        session._principals[session.status != b"I"],
        scs,
        unreadable(session, sql, scs is None),
        session.decider,
    )


def finish_judgement(session: Session, sql: str, verdict: Verdict) -> Verdict:
    analysis = verdict.analysis
    if analysis is not None and analysis.session_effects:
        verdict = session_effects(session, sql, verdict)
    count_decision(verdict)
    return verdict


def count_decision(verdict: Verdict) -> None:
    """pgsentry_statements_total{decision, rule} (the labels are kept on the verdict)."""
    metrics.STATEMENTS.inc(verdict.labels or decision_labels(verdict))


def server_text(session: Session, sql: str) -> str:
    """A statement's text as the server reads it: the wire layer decodes UTF-8 (bytes
    that are not, as surrogates); a session in another safe encoding re-reads it."""
    if session._codec is None or sql.isascii():
        return sql
    return sql.encode("utf-8", "surrogateescape").decode(session._codec, "surrogateescape")


def unreadable(session: Session, sql: str, unsettled: bool) -> str | None:
    """Why the server may read `sql` otherwise than pgsentry because of its encoding.

    ASCII reads the same in every encoding. In a client-only encoding (SJIS, BIG5...)
    the byte after a non-ASCII one may belong to the same character: a backslash there
    would not escape what pgsentry reads it escaping. While statements are in flight
    the encoding is not known (one of them may call a function that sets it), so a
    non-ASCII character right before a backslash is refused then too.
    """
    if sql.isascii():
        return None
    if session._foreign_encoding is not None:
        return (
            f"client_encoding is {session._foreign_encoding}, in which a quote or "
            "backslash can hide inside a multibyte character; pgsentry reads UTF8 and "
            "the encodings PostgreSQL allows for a server (SET client_encoding = 'UTF8')"
        )
    if unsettled and _HIGH_BEFORE_BACKSLASH.search(sql):
        return (
            "a non-ASCII character before a backslash, sent before the answer to an "
            "earlier statement that may change client_encoding; send it on its own"
        )
    return None


def scs_now(session: Session) -> bool | None:
    """standard_conforming_strings for a text judged now: the server's last report when
    everything sent before has been answered (ParameterStatus comes before
    ReadyForQuery), else not known (None): a statement still ahead of it may change the
    setting (SET, RESET, a function that sets it, the end of a transaction)."""
    inflight = session._inflight
    if (
        session.phase is Phase.READY
        and inflight.sent_batches == inflight.done_batches
        and not session._batch_open
    ):
        return session.scs
    return None  # during login too: the settings the server applies are reported last


def session_effects(session: Session, sql: str, verdict: Verdict) -> Verdict:
    """EXECUTE of an SQL-level prepared statement: judge its body again, now (who,
    when and in which transaction may have changed since PREPARE)."""
    assert verdict.analysis is not None
    for effect, value in verdict.analysis.session_effects:
        if effect != "execute":
            continue
        _, stricter = strictest(session, session._sql_prepared.get(value, ()), sql, verdict)
        assert stricter is not None
        verdict = stricter
    return verdict


def strictest(
    session: Session,
    bodies: Iterable[tuple[str, Analysis | None]],
    sql: str,
    verdict: Verdict | None,
) -> tuple[str, Verdict | None]:
    """The strictest of `verdict` (on `sql`) and each prepared body's verdict now, with
    its text. The server parsed a body when it was prepared: that analysis still holds."""
    for body_sql, analysis in bodies:
        one = session.decider.decide(body_sql, session.principal, session.scs, analysis)
        if verdict is None or _severity(one.decision) > _severity(verdict.decision):
            sql, verdict = body_sql, one
    return sql, verdict


def _severity(decision: Decision) -> int:
    return {Action.ALLOW: 0, Action.HOLD: 1, Action.DENY: 2}[decision.action]


def effects_sent(
    session: Session, sql: str, effects: tuple[tuple[str, str], ...], analysis: Analysis | None
) -> None:
    """An allowed text with PREPARE went upstream: the server may now have the name.

    Names map to every body they may have (a PREPARE the server rejects does not
    replace the name), so an EXECUTE is judged against each of them.
    """
    for effect, value in effects:
        if effect == "prepare":
            bodies = session._sql_prepared.setdefault(value, [])
            if all(body != sql for body, _ in bodies):
                if len(bodies) >= _MAX_BODIES:
                    bodies.pop(1)  # keep the confirmed one (first) and the newest
                bodies.append((sql, analysis))


def effects_confirmed(
    session: Session, sql: str, effects: tuple[tuple[str, str], ...], analysis: Analysis | None
) -> None:
    """The text completed without error: the server applied its effects."""
    for effect, value in effects:
        if effect == "prepare":
            session._sql_prepared[value] = [(sql, analysis)]
        elif effect == "deallocate":
            if value == "*":
                session._sql_prepared.clear()
            else:
                session._sql_prepared.pop(value, None)
        elif effect == "discard" and value in ("all", "plans"):
            session._sql_prepared.clear()
            if value == "all":
                session._statements.clear()
                session._guarded.clear()
