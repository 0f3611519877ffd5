"""Compiled rule conditions: globs, relation patterns, CIDRs, time windows.

Owns turning a validated `Rule` into a tuple of small condition objects, compiled once
at load time (regexes, networks, zones), each with a fast `test` and a human `explain`.
Must not do I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from fnmatch import translate
from functools import lru_cache
from zoneinfo import ZoneInfo

from pgsentry.analysis.facts import Relation, StatementFacts, WhereClause
from pgsentry.policy.decision import Principal
from pgsentry.policy.model import DAYS, Match, Who, Window

_GLOB_CHARS = re.compile(r"[*?\[]")


class Glob:
    """A set of shell-style globs (`*`, `?`, `[...]`), case-sensitive, compiled once."""

    __slots__ = ("exact", "patterns", "regex")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self.exact = frozenset(p for p in self.patterns if not _GLOB_CHARS.search(p))
        globs = [translate(p) for p in self.patterns if _GLOB_CHARS.search(p)]
        self.regex = re.compile("|".join(globs)) if globs else None

    def match(self, value: str) -> bool:
        if value in self.exact:
            return True
        return self.regex is not None and self.regex.match(value) is not None

    def __str__(self) -> str:
        return "[" + ", ".join(self.patterns) + "]"


@dataclass(slots=True)
class Context:
    """What one evaluation looks at. `local` caches the time in each zone for `now`."""

    facts: StatementFacts
    who: Principal
    now: datetime
    oid: int | None = None
    local: dict[str, datetime] | None = None

    def local_time(self, zone: str) -> datetime:
        if self.local is None:
            self.local = {}
        t = self.local.get(zone)
        if t is None:
            t = self.local[zone] = self.now.astimezone(ZoneInfo(zone))
        return t


class Condition:
    """One test of a rule. `dynamic` conditions depend on the clock or transaction state."""

    dynamic = False
    name = ""

    def test(self, ctx: Context) -> bool:
        raise NotImplementedError

    def explain(self, ctx: Context) -> str:
        raise NotImplementedError


class KindCondition(Condition):
    name = "kinds"

    def __init__(self, kinds: list[str]) -> None:
        self.glob = Glob(kinds)

    def test(self, ctx: Context) -> bool:
        return self.glob.match(ctx.facts.kind)

    def explain(self, ctx: Context) -> str:
        return f"kind {ctx.facts.kind} {'in' if self.test(ctx) else 'not in'} {self.glob}"


class RelationCondition(Condition):
    """Relation globs `schema.name`.

    deny / hold rules: matches when ANY relation matches; an unqualified relation (schema
    unknown until search_path is applied) matches when its name matches a pattern's name
    part, whatever the pattern's schema part.
    allow rules: matches when EVERY relation matches; an unqualified relation matches only
    a pattern whose schema part is `*`. So search_path can never widen an allow rule.
    Both need at least one relation.
    """

    name = "relations"

    def __init__(self, patterns: list[str], allow: bool) -> None:
        self.allow = allow
        self.patterns = tuple(patterns)
        parts = [p.split(".", 1) for p in patterns]
        self.qualified = [(Glob([s]), Glob([n])) for s, n in parts]
        unqualified = [n for s, n in parts if s == "*" or not allow]
        self.unqualified = Glob(unqualified) if unqualified else None

    def _one(self, rel: Relation) -> bool:
        if rel.schema is None:
            return self.unqualified is not None and self.unqualified.match(rel.name)
        return any(s.match(rel.schema) and n.match(rel.name) for s, n in self.qualified)

    def test(self, ctx: Context) -> bool:
        rels = ctx.facts.relations
        if not rels:
            return False
        if self.allow:
            return all(self._one(r) for r in rels)
        return any(self._one(r) for r in rels)

    def explain(self, ctx: Context) -> str:
        rels = ctx.facts.relations
        pats = "[" + ", ".join(self.patterns) + "]"
        if not rels:
            return f"no relations to match {pats}"
        shown = ", ".join(
            f"{r}{'' if r.schema is not None else ' (unqualified)'}"
            f"{' ok' if self._one(r) else ' no'}"
            for r in rels
        )
        mode = "every relation" if self.allow else "any relation"
        verdict = "matches" if self.test(ctx) else "does not match"
        return f"{mode} of {shown} {verdict} {pats}"


class WhereCondition(Condition):
    name = "where"

    def __init__(self, values: list[str]) -> None:
        self.values = frozenset(WhereClause(v) for v in values)

    def test(self, ctx: Context) -> bool:
        return ctx.facts.where in self.values

    def explain(self, ctx: Context) -> str:
        got = ctx.facts.where.value if ctx.facts.where is not None else "not applicable"
        wanted = ", ".join(sorted(v.value for v in self.values))
        return f"where {got} {'in' if self.test(ctx) else 'not in'} [{wanted}]"


class FlagCondition(Condition):
    def __init__(self, name: str, value: bool) -> None:
        self.name = name
        self.value = value

    def test(self, ctx: Context) -> bool:
        return bool(getattr(ctx.facts, self.name)) is self.value

    def explain(self, ctx: Context) -> str:
        return f"{self.name} is {getattr(ctx.facts, self.name)} (wanted {self.value})"


class NamesCondition(Condition):
    """functions / objects globs: any (deny / hold) or every (allow) name must match,
    and there must be at least one."""

    def __init__(self, name: str, patterns: list[str], allow: bool) -> None:
        self.name = name
        self.glob = Glob(patterns)
        self.allow = allow

    def test(self, ctx: Context) -> bool:
        names: tuple[str, ...] = getattr(ctx.facts, self.name)
        if not names:
            return False
        if self.allow:
            return all(self.glob.match(f) for f in names)
        return any(self.glob.match(f) for f in names)

    def explain(self, ctx: Context) -> str:
        names = ", ".join(getattr(ctx.facts, self.name)) or "none"
        mode = "every" if self.allow else "any"
        verdict = "matches" if self.test(ctx) else "does not match"
        return f"{mode} of {self.name} [{names}] {verdict} {self.glob}"


class OriginCondition(Condition):
    name = "origins"

    def __init__(self, origins: list[str]) -> None:
        self.origins = frozenset(origins)

    def test(self, ctx: Context) -> bool:
        return ctx.facts.origin in self.origins

    def explain(self, ctx: Context) -> str:
        verdict = "in" if self.test(ctx) else "not in"
        return f"origin {ctx.facts.origin} {verdict} [{', '.join(sorted(self.origins))}]"


class OidCondition(Condition):
    name = "oids"

    def __init__(self, oids: list[int]) -> None:
        self.oids = frozenset(oids)

    def test(self, ctx: Context) -> bool:
        return ctx.oid is not None and ctx.oid in self.oids

    def explain(self, ctx: Context) -> str:
        wanted = ", ".join(str(o) for o in sorted(self.oids))
        return f"function oid {ctx.oid} {'in' if self.test(ctx) else 'not in'} [{wanted}]"


class NameCondition(Condition):
    """users / databases / application_names: globs over one Principal attribute."""

    def __init__(self, name: str, attr: str, patterns: list[str]) -> None:
        self.name = name
        self.attr = attr
        self.glob = Glob(patterns)

    def test(self, ctx: Context) -> bool:
        return self.glob.match(getattr(ctx.who, self.attr))

    def explain(self, ctx: Context) -> str:
        value = getattr(ctx.who, self.attr)
        return f"{self.attr} {value!r} {'in' if self.test(ctx) else 'not in'} {self.glob}"


@lru_cache(maxsize=4096)
def _parse_addr(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class ClientCondition(Condition):
    """client_addrs: CIDRs, plain addresses, or `local` for a unix-socket client."""

    name = "client_addrs"

    def __init__(self, items: list[str]) -> None:
        self.items = tuple(items)
        self.local = "local" in items
        self.networks = tuple(ipaddress.ip_network(i) for i in items if i != "local")

    def test(self, ctx: Context) -> bool:
        addr = ctx.who.client_addr
        if addr is None:
            return self.local
        ip = _parse_addr(addr)
        return ip is not None and any(ip in n for n in self.networks)

    def explain(self, ctx: Context) -> str:
        addr = ctx.who.client_addr or "local (unix socket)"
        verdict = "in" if self.test(ctx) else "not in"
        return f"client {addr} {verdict} [{', '.join(self.items)}]"


class TransactionCondition(Condition):
    name = "in_transaction"
    dynamic = True

    def __init__(self, value: bool) -> None:
        self.value = value

    def test(self, ctx: Context) -> bool:
        return ctx.who.in_transaction is self.value

    def explain(self, ctx: Context) -> str:
        return f"in_transaction is {ctx.who.in_transaction} (wanted {self.value})"


@dataclass(frozen=True, slots=True)
class CompiledWindow:
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time | None  # None = end of day (24:00)
    zone: str
    text: str

    def contains(self, local: datetime) -> bool:
        t = local.time().replace(tzinfo=None)
        day = local.weekday()
        end = self.end
        if end is None or self.start < end:
            return day in self.days and self.start <= t and (end is None or t < end)
        # wraps past midnight: the window belongs to the day it starts on
        if day in self.days and t >= self.start:
            return True
        return (day - 1) % 7 in self.days and t < end


def compile_window(w: Window, default_zone: str | None) -> CompiledWindow:
    zone = w.timezone or default_zone
    if zone is None:  # the loader checks this first, with a file:line error
        raise ValueError("time window without timezone")
    days = frozenset(DAYS.index(d) for d in w.days) if w.days else frozenset(range(7))
    start, end = time(0, 0), None
    if w.hours:
        a, b = w.hours.split("-")
        start = time(int(a[:2]), int(a[3:]))
        end = None if b == "24:00" else time(int(b[:2]), int(b[3:]))
    day_names = ",".join(DAYS[d] for d in sorted(days)) if w.days else "every day"
    text = f"{day_names} {w.hours or '00:00-24:00'} {zone}"
    return CompiledWindow(days, start, end, zone, text)


class TimeCondition(Condition):
    """during: now is inside one of the windows. outside: now is inside none of them."""

    dynamic = True

    def __init__(self, windows: list[CompiledWindow], inside: bool) -> None:
        self.windows = tuple(windows)
        self.inside = inside
        self.name = "during" if inside else "outside"

    def _within(self, ctx: Context) -> bool:
        return any(w.contains(ctx.local_time(w.zone)) for w in self.windows)

    def test(self, ctx: Context) -> bool:
        return self._within(ctx) is self.inside

    def explain(self, ctx: Context) -> str:
        where = "inside" if self._within(ctx) else "outside"
        windows = "; ".join(w.text for w in self.windows)
        return f"{ctx.now.isoformat()} is {where} [{windows}] ({self.name})"


def compile_conditions(
    match: Match, who: Who, *, allow: bool, default_zone: str | None
) -> tuple[Condition, ...]:
    """Cheap fact tests first, then who is asking, then clock / transaction state."""
    out: list[Condition] = []
    if match.kinds is not None:
        out.append(KindCondition(match.kinds))
    if match.oids is not None:
        out.append(OidCondition(match.oids))
    if match.origins is not None:
        out.append(OriginCondition(match.origins))
    if match.where is not None:
        out.append(WhereCondition(list(match.where)))
    if match.cascade is not None:
        out.append(FlagCondition("cascade", match.cascade))
    if match.dynamic_sql is not None:
        out.append(FlagCondition("dynamic_sql", match.dynamic_sql))
    if match.relations is not None:
        out.append(RelationCondition(match.relations, allow))
    if match.functions is not None:
        out.append(NamesCondition("functions", match.functions, allow))
    if match.objects is not None:
        out.append(NamesCondition("objects", match.objects, allow))
    if who.users is not None:
        out.append(NameCondition("users", "user", who.users))
    if who.databases is not None:
        out.append(NameCondition("databases", "database", who.databases))
    if who.application_names is not None:
        out.append(NameCondition("application_names", "application_name", who.application_names))
    if who.client_addrs is not None:
        out.append(ClientCondition(who.client_addrs))
    if who.in_transaction is not None:
        out.append(TransactionCondition(who.in_transaction))
    if who.during is not None:
        out.append(TimeCondition([compile_window(w, default_zone) for w in who.during], True))
    if who.outside is not None:
        out.append(TimeCondition([compile_window(w, default_zone) for w in who.outside], False))
    return tuple(out)


def utc(now: datetime) -> datetime:
    """A naive `now` is taken as UTC (never as the host's local time)."""
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)
