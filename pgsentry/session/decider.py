"""Turns SQL text into a policy Decision for one session, with a per-session cache.

Owns the glue between analysis (facts, globally cached by text) and policy
(who is asking). The cache here maps text -> (Decision, facts) for one session and
is dropped whenever the policy generation changes. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pgsentry.analysis.analyzer import MAX_CACHED_TEXT, known_lexical
from pgsentry.analysis.facts import Analysis, StatementFacts
from pgsentry.analysis.lexical import lexical_key
from pgsentry.audit.encode import members
from pgsentry.metrics import NO_RULE
from pgsentry.policy.decision import Action, Decision, Principal

_CACHE_LIMIT = 512


class PolicyLike(Protocol):
    generation: int

    def decide(self, analysis: Analysis, who: Principal, now: datetime) -> Decision: ...

    def decide_function_call(self, oid: int, who: Principal, now: datetime) -> Decision: ...


class Analyzer(Protocol):
    def __call__(
        self, sql: str, *, standard_conforming_strings: bool | None = True
    ) -> Analysis: ...


class PolicyHolder:
    """The policy currently in force; swapped whole on reload (never mutated)."""

    def __init__(self, policy: PolicyLike) -> None:
        self.policy = policy


def facts_summary(analysis: Analysis) -> list[dict[str, Any]]:
    """The facts as plain JSON-able dicts, for the audit log."""
    return [_fact(f) for f in analysis.statements]


def _fact(f: StatementFacts) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": f.kind}
    if f.origin != "top":
        out["origin"] = f.origin
    if f.relations:
        out["relations"] = [str(r) for r in f.relations]
    if f.where is not None:
        out["where"] = f.where.value
    if f.cascade:
        out["cascade"] = True
    if f.dynamic_sql:
        out["dynamic_sql"] = True
    if f.functions:
        out["functions"] = list(f.functions)
    return out


@dataclass(slots=True)
class Verdict:
    decision: Decision
    analysis: Analysis | None
    facts: list[dict[str, Any]] | None
    # The "statement" audit members that follow from the verdict (built once, then reused
    # by every statement of this shape in the session): see `audit_tail`.
    audit_tail: tuple[bytes, bytes, bytes] | None = None
    labels: tuple[str, str] | None = None  # pgsentry_statements_total's, see decision_labels
    # The same labels when the verdict is a plain ALLOW (no session effects): set by
    # SessionDecider when it keeps the verdict; the hot paths (`records.query_known`,
    # `records.execute_batch`) forward only statements whose verdict has them.
    plain_labels: tuple[str, str] | None = None


def decision_labels(verdict: Verdict) -> tuple[str, str]:
    """The verdict's pgsentry_statements_total labels (decision, rule), kept on it."""
    labels = verdict.labels
    if labels is None:
        d = verdict.decision
        if d.would is None:
            labels = (d.action.value, d.rule or NO_RULE)
        else:  # shadow: the rule that would have decided, not the one enforced
            labels = (f"shadow_{d.would.value}", d.would_rule or d.rule or NO_RULE)
        verdict.labels = labels
    return labels


def verdict_facts(verdict: Verdict) -> list[dict[str, Any]] | None:
    """The verdict's facts for the audit log (summarised once, then kept)."""
    if verdict.facts is None and verdict.analysis is not None:
        verdict.facts = facts_summary(verdict.analysis)
    return verdict.facts


def audit_tail(verdict: Verdict) -> tuple[bytes, bytes, bytes]:
    """The verdict's "statement" audit members for `encode.statement_line`, built once:
    (all of them, ``,"decision":..,"rule":..``,
    ``[,"would":..,"would_rule":..][,"facts":[..]]``). An Execute
    record puts its statement and portal names between the last two."""
    tail = verdict.audit_tail
    if tail is None:
        d = verdict.decision
        first = b"," + members(decision=d.action.value, rule=d.rule)
        rest: dict[str, object] = {}
        if d.would is not None:
            rest["would"] = d.would.value
            rest["would_rule"] = d.would_rule
        facts = verdict.facts  # summarised here without keeping it: the tail has it
        if facts is None and verdict.analysis is not None:
            facts = facts_summary(verdict.analysis)
        if facts is not None:
            rest["facts"] = facts
        second = b"," + members(**rest) if rest else b""
        tail = (first + second, first, second)
        # Sessions decide separately, but most of them end up with the same few tails.
        tail = verdict.audit_tail = _tails.setdefault(tail[0], tail)
        if len(_tails) > _CACHE_LIMIT:
            _tails.clear()
    return tail


_tails: dict[bytes, tuple[bytes, bytes, bytes]] = {}


class SessionDecider:
    """Per-session decision cache in front of analysis + policy."""

    __slots__ = (
        "_analyze",
        "_by_analysis",
        "_cache",
        "by_lexical",
        "generation",
        "holder",
    )

    def __init__(self, holder: PolicyHolder, analyze: Analyzer) -> None:
        self.holder = holder
        self._analyze = analyze
        self._cache: dict[tuple[str, bool | None, bool], Verdict] = {}
        # Analysis shares one Analysis object per statement shape (literals aside), so a
        # decision for a new text of a known shape is a look-up too. Keyed by identity;
        # the value keeps the Analysis alive so the id cannot be reused.
        self._by_analysis: dict[tuple[int, bool], tuple[Analysis, Verdict]] = {}
        # The same, one step earlier: lexical shape key -> verdict, for texts whose key
        # analysis has stored (`known_lexical`), so a never-seen literal variant costs one
        # lexical_key() and one look-up. Index: in a transaction block or not. Read by the
        # Query fast path too (`records.query_known`), as long as `generation` is current.
        self.by_lexical: tuple[dict[str, Verdict], dict[str, Verdict]] | None = None
        self.generation = -1  # of the policy these caches were filled under

    def decide(
        self, sql: str, who: Principal, scs: bool | None, analysis: Analysis | None = None
    ) -> Verdict:
        """The verdict on `sql`; `analysis`, when given, is its analysis made elsewhere (in
        another process: see `Judgement`)."""
        policy = self.holder.policy
        if policy.generation != self.generation:
            self.reset()
            self.generation = policy.generation
        in_tx = who.in_transaction
        lexical = lexical_key(sql) if len(sql) <= MAX_CACHED_TEXT else None
        if lexical is not None and self.by_lexical is not None:
            hit = self.by_lexical[in_tx].get(lexical)
            if hit is not None:
                return hit
        key = (sql, scs, in_tx)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if analysis is None:
            analysis = self._analyze(sql, standard_conforming_strings=scs)
        shape = (id(analysis), in_tx)
        known = self._by_analysis.get(shape)
        if known is not None and known[0] is analysis:
            verdict = known[1]  # a literal variant of a known shape: no text-cache slot
        else:
            decision = policy.decide(analysis, who, datetime.now(UTC))
            verdict = Verdict(decision, analysis, None)
            if not decision.cacheable:
                return verdict
            if decision.action is Action.ALLOW and not analysis.session_effects:
                verdict.plain_labels = decision_labels(verdict)
            if len(self._by_analysis) >= _CACHE_LIMIT:
                self._by_analysis.clear()
            self._by_analysis[shape] = (analysis, verdict)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = verdict
        # A key equal to its text means a text without constants (`?` is not in the key
        # alphabet), the only text with that key: its verdict may be kept under it too.
        if lexical is not None and (lexical == sql or known_lexical(lexical) is analysis):
            if self.by_lexical is None:
                self.by_lexical = ({}, {})
            by_lexical = self.by_lexical[in_tx]
            if len(by_lexical) >= _CACHE_LIMIT:
                by_lexical.clear()
            by_lexical[lexical] = verdict
        return verdict

    def analyze_apart(self, sql: str, scs: bool | None) -> Analysis:
        """The analysis alone (thread-safe: the analyzer's caches are bounded dicts)."""
        return self._analyze(sql, standard_conforming_strings=scs)

    def decide_unreadable(self, reason: str, who: Principal) -> Verdict:
        """The verdict on a text pgsentry cannot read (`reason`): the policy's
        on_unparseable, as for a text that does not parse. Never cached."""
        analysis = Analysis(parse_error=reason)
        return Verdict(self.holder.policy.decide(analysis, who, datetime.now(UTC)), analysis, None)

    def reset(self) -> None:
        """Forget every decision (policy reloaded, or who is asking changed)."""
        self._cache.clear()
        self._by_analysis.clear()
        self.by_lexical = None

    def decide_function_call(self, oid: int, who: Principal) -> Decision:
        return self.holder.policy.decide_function_call(oid, who, datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Judgement:
    """A decision to make on a text, with what it depends on taken when the session
    reached the text: `decide()` reads nothing of the session, so it may run on a worker
    thread, or after the text was analysed in another process (`analysis`)."""

    sql: str
    who: Principal
    scs: bool | None
    unreadable: str | None  # why the text cannot be read safely, if so
    decider: SessionDecider

    @property
    def needs_analysis(self) -> bool:
        return self.unreadable is None

    def decide(self, analysis: Analysis | None = None) -> Verdict:
        if self.unreadable is not None:
            return self.decider.decide_unreadable(self.unreadable, self.who)
        return self.decider.decide(self.sql, self.who, self.scs, analysis)

    def decide_apart(self, analysis: Analysis | None = None) -> Verdict:
        """`decide()` for another thread: the same verdict, made without the decider's
        caches (the event loop may reset them meanwhile; a long text is not worth keeping)."""
        if self.unreadable is not None:
            return self.decider.decide_unreadable(self.unreadable, self.who)
        if analysis is None:
            analysis = self.decider.analyze_apart(self.sql, self.scs)
        return Verdict(
            self.decider.holder.policy.decide(analysis, self.who, datetime.now(UTC)),
            analysis,
            None,
        )

    def failed(self, exc: BaseException) -> Verdict:
        """The verdict when judging apart failed (a worker process killed for memory...):
        the policy's on_unparseable, as for any text pgsentry cannot analyse."""
        return self.decider.decide_unreadable(
            f"analysis failed: {type(exc).__name__}: {exc}", self.who
        )
