"""Policy evaluation: `(analysis, principal, now) -> Decision`.

Owns the compiled `Policy` and its decision procedure: each statement (nested ones
included) gets the first matching enforced rule, else the default; the whole text gets
the most severe result (deny > hold > allow). Must not do I/O: it is called on the
proxy's hot path (loading lives in `load`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pgsentry.analysis.facts import Analysis, StatementFacts
from pgsentry.policy.conditions import Condition, Context, utc
from pgsentry.policy.decision import Action, Decision, HoldSpec, Principal
from pgsentry.policy.model import TestCase
from pgsentry.policy.vocabulary import FUNCTION_CALL, KINDS

SEVERITY = {Action.ALLOW: 0, Action.HOLD: 1, Action.DENY: 2}
_generations = itertools.count(1)


def next_generation() -> int:
    return next(_generations)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready to evaluate. Pseudo-rules `default`, `on_unparseable` and
    `function_call` have no conditions and are never shadow."""

    id: str
    action: Action
    message: str | None = None
    shadow: bool = False
    conditions: tuple[Condition, ...] = ()
    hold: HoldSpec | None = None
    description: str = ""
    source: str = ""  # "file:line" of the rule
    kinds: frozenset[str] | None = None  # the vocabulary kinds it can match; None = any

    def matches(self, ctx: Context) -> tuple[bool, bool]:
        """(matched, consulted a clock / transaction condition)."""
        dynamic = False
        for cond in self.conditions:
            if cond.dynamic:
                dynamic = True
            if not cond.test(ctx):
                return False, dynamic
        return True, dynamic


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one statement: the enforced rule and the would-be rule."""

    rule: CompiledRule  # enforced (a pseudo-rule for default / shadow policy)
    would: CompiledRule  # what would be enforced if shadow rules / shadow policy were live
    dynamic: bool


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One rule as `explain` shows it: matched or not, why, and the condition that failed."""

    rule: CompiledRule
    matched: bool
    why: list[str]
    failed_on: str | None


@dataclass(frozen=True, slots=True)
class LocatedTest:
    case: TestCase
    source: str  # "file:line"


_FUNCTION_CALL_FACTS = StatementFacts(kind=FUNCTION_CALL)


class Policy:
    """A loaded, validated, compiled policy. Immutable; a reload builds a new one."""

    def __init__(
        self,
        *,
        rules: Sequence[CompiledRule],
        default: CompiledRule,
        on_unparseable: CompiledRule,
        shadow: bool,
        source_paths: Sequence[Path],
        root: Path,
        tests: Sequence[LocatedTest] = (),
    ) -> None:
        self.rules = tuple(rules)
        self.default = default
        self.on_unparseable = on_unparseable
        self.shadow = shadow
        self.source_paths = tuple(source_paths)
        self.root = root
        self.tests = tuple(tests)
        self.generation = next_generation()
        self._shadow_allow = CompiledRule("shadow-mode", Action.ALLOW)
        self._function_call_deny = CompiledRule(
            "function_call",
            Action.DENY,
            "the FunctionCall protocol message is allowed only for functions a rule allows",
        )
        self.rule_ids = frozenset(r.id for r in self.rules)
        # enforced rules (and the default) that hold: they need approvers to be released
        enforced = () if shadow else (*(r for r in self.rules if not r.shadow), default)
        self.hold_rule_ids = tuple(r.id for r in enforced if r.action is Action.HOLD)
        # per kind, only the rules that can match it (an unknown kind gets every rule)
        self._by_kind = {
            k: tuple(r for r in self.rules if r.kinds is None or k in r.kinds) for k in KINDS
        }

    # -- per statement --------------------------------------------------------------

    def judge(self, ctx: Context, fallback: CompiledRule | None = None) -> Verdict:
        """First matching enforced rule, else `fallback` (the default)."""
        fallback = fallback or self.default
        dynamic = False
        would: CompiledRule | None = None
        for rule in self._by_kind.get(ctx.facts.kind, self.rules):
            matched, dyn = rule.matches(ctx)
            dynamic = dynamic or dyn
            if not matched:
                continue
            if self.shadow:
                return Verdict(self._shadow_allow, rule, dynamic)
            if rule.shadow:
                would = would or rule
                continue
            return Verdict(rule, would or rule, dynamic)
        if self.shadow:
            return Verdict(self._shadow_allow, fallback, dynamic)
        return Verdict(fallback, would or fallback, dynamic)

    def trace(self, ctx: Context, fallback: CompiledRule | None = None) -> list[TraceStep]:
        """For `explain`: each rule consulted, whether it matched, and why (slow path)."""
        out: list[TraceStep] = []
        for rule in self.rules:
            why: list[str] = []
            failed_on: str | None = None
            for cond in rule.conditions:
                why.append(cond.explain(ctx))
                if not cond.test(ctx):
                    failed_on = cond.name
                    break
            if not rule.conditions:
                why.append("no conditions: matches every statement")
            out.append(TraceStep(rule, failed_on is None, why, failed_on))
            if failed_on is None and (self.shadow or not rule.shadow):
                return out
        fb = fallback or self.default
        out.append(TraceStep(fb, True, ["no enforced rule matched"], None))
        return out

    # -- whole texts ------------------------------------------------------------------

    def decide(self, analysis: Analysis, who: Principal, now: datetime) -> Decision:
        if analysis.parse_error is not None:
            rule = self.on_unparseable
            would = rule
            if self.shadow:
                rule = self._shadow_allow
            v = Verdict(rule, would, False)
            error = analysis.parse_error
            return _combine([v], lambda i: f"could not parse the statement: {error}")
        statements = analysis.statements
        if not statements:
            return Decision(Action.ALLOW, rule=None, reason="no statements")
        now = utc(now)
        verdicts = [self.judge(Context(facts, who, now)) for facts in statements]

        def label(i: int) -> str:
            facts = statements[i]
            where = "" if facts.origin == "top" else f" in {facts.origin}"
            return f"statement {i + 1} of {len(statements)} ({facts.kind}{where})"

        return _combine(verdicts, label)

    def decide_function_call(self, oid: int, who: Principal, now: datetime) -> Decision:
        """FunctionCall message: allowed only if a rule allows kind `function_call` (and,
        if it lists `oids`, this oid). The policy default does not apply: no match = deny."""
        ctx = Context(_FUNCTION_CALL_FACTS, who, utc(now), oid=oid)
        v = self.judge(ctx, self._function_call_deny)
        return _combine([v], lambda i: f"function call oid {oid}")


def _describe(rule: CompiledRule) -> str:
    if rule.id == "default":
        return "no rule matched; policy default"
    if rule.id == "on_unparseable":
        return "policy on_unparseable"
    if rule.id == "function_call":
        return "no rule allows this function call"
    return f"rule {rule.id}"


def _merge_holds(specs: list[HoldSpec]) -> HoldSpec | None:
    """Several held statements in one text: the strictest of everything; None when the
    approver restrictions have no one in common (nobody could approve)."""
    if len(specs) == 1:
        return specs[0]
    approvers = _intersect([s.approvers for s in specs if s.approvers])
    groups = _intersect([s.groups for s in specs if s.groups])
    if approvers == () and any(s.approvers for s in specs):
        return None
    if groups == () and any(s.groups for s in specs):
        return None
    return HoldSpec(
        timeout_seconds=min(s.timeout_seconds for s in specs),
        approvals=max(s.approvals for s in specs),
        approvers=approvers,
        groups=groups,
        allow_self_approval=all(s.allow_self_approval for s in specs),
    )


def _intersect(lists: list[tuple[str, ...]]) -> tuple[str, ...]:
    if not lists:
        return ()
    common = set(lists[0]).intersection(*lists[1:])
    return tuple(x for x in lists[0] if x in common)


def _combine(verdicts: list[Verdict], label: Callable[[int], str]) -> Decision:
    """The most severe statement decides (the first one on a tie)."""
    worst = wworst = 0
    cacheable = True
    for i, v in enumerate(verdicts):
        if SEVERITY[v.rule.action] > SEVERITY[verdicts[worst].rule.action]:
            worst = i
        if SEVERITY[v.would.action] > SEVERITY[verdicts[wworst].would.action]:
            wworst = i
        if v.dynamic:
            cacheable = False
    rule = verdicts[worst].rule
    would = verdicts[wworst].would
    action = rule.action
    hold: HoldSpec | None = None
    reason = f"{label(worst)}: {_describe(rule)}"
    message = rule.message
    if action is Action.HOLD:
        specs = [v.rule.hold or HoldSpec() for v in verdicts if v.rule.action is Action.HOLD]
        hold = _merge_holds(specs)
        if hold is None:
            action = Action.DENY
            message = "held statements in this text need approvers with no one in common"
            reason += "; hold rules conflict"
    if rule.id == "shadow-mode":
        reason = f"policy in shadow mode; would: {label(wworst)}: {_describe(would)}"
        rule_id: str | None = None
        message = None
    else:
        rule_id = rule.id
    would_action = would.action if would.action is not action else None
    return Decision(
        action=action,
        rule=rule_id,
        message=message,
        reason=reason,
        would=would_action,
        hold=hold,
        cacheable=cacheable,
        would_rule=would.id if would_action is not None else None,
    )
