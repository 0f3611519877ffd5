"""Turns SQL text into a policy Decision for one session, with a per-session cache.

Owns the glue between analysis (facts, globally cached by text) and policy
(who is asking). The cache here maps text -> (Decision, facts) for one session and
is dropped whenever the policy generation changes. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pgsentry.analysis.facts import Analysis, StatementFacts
from pgsentry.audit.encode import members
from pgsentry.policy.decision import Decision, Principal

_CACHE_LIMIT = 512


class PolicyLike(Protocol):
    generation: int

    def decide(self, analysis: Analysis, who: Principal, now: datetime) -> Decision: ...

    def decide_function_call(self, oid: int, who: Principal, now: datetime) -> Decision: ...


class Analyzer(Protocol):
    def __call__(self, sql: str, *, standard_conforming_strings: bool = True) -> Analysis: ...


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
    audit_tail: bytes | None = None
    labels: tuple[str, str] | None = None  # pgsentry_statements_total's, see count_decision


def verdict_facts(verdict: Verdict) -> list[dict[str, Any]] | None:
    """The verdict's facts for the audit log (summarised once, then kept)."""
    if verdict.facts is None and verdict.analysis is not None:
        verdict.facts = facts_summary(verdict.analysis)
    return verdict.facts


def audit_tail(verdict: Verdict) -> bytes:
    """``,"decision":..,"rule":..[,"would":..][,"facts":[..]]`` for `encode.statement_line`."""
    tail = verdict.audit_tail
    if tail is None:
        d = verdict.decision
        fields: dict[str, object] = {"decision": d.action.value, "rule": d.rule}
        if d.would is not None:
            fields["would"] = d.would.value
        facts = verdict_facts(verdict)
        if facts is not None:
            fields["facts"] = facts
        tail = verdict.audit_tail = b"," + members(**fields)
    return tail


class SessionDecider:
    """Per-session decision cache in front of analysis + policy."""

    __slots__ = ("_analyze", "_by_analysis", "_cache", "_generation", "_holder")

    def __init__(self, holder: PolicyHolder, analyze: Analyzer) -> None:
        self._holder = holder
        self._analyze = analyze
        self._cache: dict[tuple[str, bool, bool], Verdict] = {}
        # Analysis shares one Analysis object per statement shape (literals aside), so a
        # decision for a new text of a known shape is a look-up too. Keyed by identity;
        # the value keeps the Analysis alive so the id cannot be reused.
        self._by_analysis: dict[tuple[int, bool], tuple[Analysis, Verdict]] = {}
        self._generation = -1

    def decide(self, sql: str, who: Principal, scs: bool) -> Verdict:
        policy = self._holder.policy
        if policy.generation != self._generation:
            self.reset()
            self._generation = policy.generation
        key = (sql, scs, who.in_transaction)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        analysis = self._analyze(sql, standard_conforming_strings=scs)
        shape = (id(analysis), who.in_transaction)
        known = self._by_analysis.get(shape)
        if known is not None and known[0] is analysis:
            return known[1]  # a literal variant of a known shape: no text-cache slot
        decision = policy.decide(analysis, who, datetime.now(UTC))
        verdict = Verdict(decision, analysis, None)
        if not decision.cacheable:
            return verdict
        if len(self._by_analysis) >= _CACHE_LIMIT:
            self._by_analysis.clear()
        self._by_analysis[shape] = (analysis, verdict)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = verdict
        return verdict

    def reset(self) -> None:
        """Forget every decision (policy reloaded, or who is asking changed)."""
        self._cache.clear()
        self._by_analysis.clear()

    def decide_function_call(self, oid: int, who: Principal) -> Decision:
        return self._holder.policy.decide_function_call(oid, who, datetime.now(UTC))
