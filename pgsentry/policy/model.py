"""The policy file format: pydantic v2 models of one YAML policy file.

Owns the shape and per-field validation of a policy file (unknown keys are errors,
globs / CIDRs / time windows / time zones are checked here). Must not read files
(see `load`) nor evaluate anything (see `engine`).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from pgsentry.policy.vocabulary import KINDS, ORIGINS

ActionName = Literal["allow", "deny", "hold"]
WhereName = Literal["missing", "tautological", "present"]

RULE_ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
RESERVED_IDS = frozenset({"default", "on-unparseable"})
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS_RE = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")
DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _as_list(value: Any) -> Any:
    """Let a single scalar stand for a one-element list: `users: migrator`."""
    if isinstance(value, str | int | bool):
        return [value]
    return value


def _duration(value: Any) -> Any:
    """Seconds as a number, or a string such as `90s`, `5m`, `1h`, `500ms`."""
    if isinstance(value, str):
        m = DURATION_RE.match(value.strip())
        if m is None:
            raise ValueError(f"{value!r} is not a duration: write seconds (300) or 90s / 5m / 1h")
        return float(m.group(1)) * _UNITS[m.group(2)]
    return value


StrList = Annotated[list[str], BeforeValidator(_as_list), Field(min_length=1)]
Duration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Paris or UTC)"
        ) from None
    return name


class HoldOptions(_Strict):
    """How a held statement may be released (action: hold only)."""

    timeout: Duration = 300.0
    approvals: int = Field(default=1, ge=1, le=20)
    approvers: StrList | None = None
    groups: StrList | None = None
    allow_self_approval: bool = False


class Window(_Strict):
    """A weekly time window: some days, some hours, in one time zone."""

    days: StrList | None = None
    hours: str | None = None
    timezone: str | None = None

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        out: list[str] = []
        for item in v:
            word = item.lower()
            if "-" in word:
                a, _, b = word.partition("-")
                if a not in DAYS or b not in DAYS:
                    raise ValueError(f"{item!r}: day ranges look like mon-fri")
                i, j = DAYS.index(a), DAYS.index(b)
                out.extend(DAYS[(i + k) % 7] for k in range((j - i) % 7 + 1))
            elif word in DAYS:
                out.append(word)
            else:
                raise ValueError(f"{item!r} is not a day: use {', '.join(DAYS)} or a range mon-fri")
        return out

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = HOURS_RE.match(v)
        if m is None:
            raise ValueError(f"{v!r}: hours look like 09:00-18:00 (24-hour clock)")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
            raise ValueError(f"{v!r}: not a valid time range (00:00 to 24:00)")
        if (h1, m1) == (h2, m2):
            raise ValueError(f"{v!r}: empty window; for a whole day omit hours")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _check_zone(v)


class Match(_Strict):
    """Conditions on the statement's facts. All given conditions must hold."""

    kinds: StrList | None = None
    relations: StrList | None = None
    where: Annotated[list[WhereName], BeforeValidator(_as_list), Field(min_length=1)] | None = None
    cascade: bool | None = None
    dynamic_sql: bool | None = None
    functions: StrList | None = None
    objects: StrList | None = None
    origins: StrList | None = None
    oids: Annotated[list[int], BeforeValidator(_as_list), Field(min_length=1)] | None = None

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: list[str] | None) -> list[str] | None:
        for pattern in v or ():
            if not any(fnmatchcase(k, pattern) for k in KINDS):
                raise ValueError(f"{pattern!r} matches no statement kind (see the kinds list)")
        return v

    @field_validator("relations")
    @classmethod
    def _relations(cls, v: list[str] | None) -> list[str] | None:
        for pattern in v or ():
            if pattern.count(".") != 1 or pattern.startswith(".") or pattern.endswith("."):
                raise ValueError(
                    f"{pattern!r}: write schema.name globs such as public.accounts, "
                    "public.* or *.accounts"
                )
        return v

    @field_validator("functions")
    @classmethod
    def _functions(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [f.lower() for f in v]

    @field_validator("origins")
    @classmethod
    def _origins(cls, v: list[str] | None) -> list[str] | None:
        for o in v or ():
            if o not in ORIGINS:
                raise ValueError(f"{o!r} is not an origin: use {', '.join(sorted(ORIGINS))}")
        return v


class Who(_Strict):
    """Conditions on who is asking, and when. All given conditions must hold."""

    users: StrList | None = None
    databases: StrList | None = None
    application_names: StrList | None = None
    client_addrs: StrList | None = None
    in_transaction: bool | None = None
    during: Annotated[list[Window], Field(min_length=1)] | None = None
    outside: Annotated[list[Window], Field(min_length=1)] | None = None

    @field_validator("client_addrs")
    @classmethod
    def _cidrs(cls, v: list[str] | None) -> list[str] | None:
        for item in v or ():
            if item == "local":
                continue
            try:
                ipaddress.ip_network(item, strict=True)
            except ValueError as exc:
                raise ValueError(
                    f"{item!r} is not an address or CIDR ({exc}); 'local' means a unix socket"
                ) from None
        return v


class Rule(_Strict):
    id: str
    description: str = ""
    action: ActionName
    message: str | None = None
    shadow: bool = False
    match: Match = Match()
    who: Who = Who()
    hold: HoldOptions | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not RULE_ID_RE.match(v):
            raise ValueError(f"{v!r}: rule ids are kebab-case (lower-case words joined by -)")
        if v in RESERVED_IDS:
            raise ValueError(f"{v!r} is reserved")
        return v

    @model_validator(mode="after")
    def _hold_only_for_hold(self) -> Rule:
        if self.hold is not None and self.action != "hold":
            raise ValueError("hold options are only allowed with action: hold")
        return self


class TestWho(_Strict):
    user: str = "app"
    database: str = "app"
    application_name: str = ""
    client_addr: str | None = None
    in_transaction: bool = False

    @field_validator("client_addr")
    @classmethod
    def _addr(cls, v: str | None) -> str | None:
        if v is not None:
            ipaddress.ip_address(v)
        return v


class TestCase(_Strict):
    """One embedded test: a SQL text and who sends it -> the expected outcome."""

    name: str | None = None
    sql: str
    who: TestWho = TestWho()
    at: datetime | None = None
    standard_conforming_strings: bool = True
    expect: ActionName
    rule: str | None = None
    would: ActionName | None = None
    would_rule: str | None = None

    @field_validator("at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("give a time zone offset, e.g. 2024-06-01T03:00:00+02:00")
        return v


class PolicyFile(_Strict):
    """One YAML file. Several files (a directory) form one policy."""

    version: Literal[1]
    default: ActionName | None = None
    default_message: str | None = None
    on_unparseable: ActionName | None = None
    shadow: bool | None = None
    timezone: str | None = None
    rules: list[Rule] = []
    tests: list[TestCase] = []

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _check_zone(v)
