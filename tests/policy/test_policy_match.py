"""Each matcher on hand-built facts: kinds, relations, where, flags, functions, origins,
who is asking (users, databases, application_name, CIDR, transaction) and time windows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from policy_support import APP, NOON, one, policy, stmt

from pgsentry.analysis.facts import Relation, StatementFacts, WhereClause
from pgsentry.policy import Action, Policy, Principal


def deny_if(tmp: Path, body: str) -> Policy:
    """A policy: default allow, one deny rule `r` with the given match/who body."""
    return policy(tmp, "version: 1\ndefault: allow\nrules:\n  - id: r\n    action: deny\n" + body)


def action(p: Policy, *statements: object, who: Principal = APP, now: datetime = NOON) -> str:
    return p.decide(one(*statements), who, now).action.value  # type: ignore[arg-type]


def test_kinds_with_globs(tmp_path: Path) -> None:
    p = deny_if(tmp_path, "    match: {kinds: ['drop_*', truncate]}\n")
    assert action(p, stmt("drop_table", "t")) == "deny"
    assert action(p, stmt("drop_schema")) == "deny"
    assert action(p, stmt("truncate", "t")) == "deny"
    assert action(p, stmt("select", "t")) == "allow"
    assert action(p, stmt("truncated")) == "allow"  # globs match the whole word


def test_relation_globs_on_qualified_names(tmp_path: Path) -> None:
    p = deny_if(tmp_path, "    match: {relations: ['public.acc*', '*.ledger']}\n")
    assert action(p, stmt("delete", "public.accounts")) == "deny"
    assert action(p, stmt("delete", "billing.ledger")) == "deny"
    assert action(p, stmt("delete", "billing.accounts")) == "allow"
    assert action(p, stmt("delete", "other.x", "billing.ledger")) == "deny"  # any relation
    assert action(p, stmt("delete")) == "allow"  # no relations: nothing to match
    # a quoted schema named "public.x" is not schema public
    faked = StatementFacts("delete", relations=(Relation("public.x", "accounts"),))
    assert action(p, faked) == "allow"


def test_unqualified_names_are_conservative_for_deny(tmp_path: Path) -> None:
    p = deny_if(tmp_path, "    match: {relations: ['billing.invoices']}\n")
    # `invoices` may resolve to billing.invoices through search_path: deny
    assert action(p, stmt("delete", "invoices")) == "deny"
    assert action(p, stmt("delete", "other")) == "allow"


def test_unqualified_names_never_widen_an_allow(tmp_path: Path) -> None:
    p = policy(
        tmp_path,
        """
        version: 1
        default: deny
        rules:
          - id: scratch
            action: allow
            match: {relations: ['scratch.*']}
          - id: any-schema-tmp
            action: allow
            match: {relations: ['*.tmp_*']}
        """,
    )
    d = p.decide(one(stmt("drop_table", "scratch.a")), APP, NOON)
    assert (d.action, d.rule) == (Action.ALLOW, "scratch")
    # `a` could be public.a after SET search_path = public: not covered by scratch.*
    assert p.decide(one(stmt("drop_table", "a")), APP, NOON).action is Action.DENY
    # a schema part of `*` covers every schema, so it covers unqualified names too
    d = p.decide(one(stmt("drop_table", "tmp_x")), APP, NOON)
    assert (d.action, d.rule) == (Action.ALLOW, "any-schema-tmp")
    # allow needs EVERY relation to match
    assert (
        p.decide(one(stmt("drop_table", "scratch.a", "public.b")), APP, NOON).action is Action.DENY
    )


def test_where_cascade_dynamic_origin(tmp_path: Path) -> None:
    p = deny_if(tmp_path, "    match: {where: [missing, tautological]}\n")
    assert action(p, stmt("delete", "t", where=WhereClause.MISSING)) == "deny"
    assert action(p, stmt("update", "t", where=WhereClause.TAUTOLOGICAL)) == "deny"
    assert action(p, stmt("delete", "t", where=WhereClause.PRESENT)) == "allow"
    assert action(p, stmt("select", "t")) == "allow"  # no where fact at all

    p = deny_if(tmp_path, "    match: {cascade: true}\n")
    assert action(p, stmt("drop_type", cascade=True)) == "deny"
    assert action(p, stmt("drop_type")) == "allow"

    p = deny_if(tmp_path, "    match: {dynamic_sql: true, origins: [do_block]}\n")
    assert action(p, stmt("do_block", origin="do_block", dynamic_sql=True)) == "deny"
    assert action(p, stmt("do_block", origin="top", dynamic_sql=True)) == "allow"
    assert action(p, stmt("do_block", origin="do_block")) == "allow"


def test_functions_any_for_deny_every_for_allow(tmp_path: Path) -> None:
    p = policy(
        tmp_path,
        """
        version: 1
        default: allow
        rules:
          - id: dba-may-terminate
            action: allow
            match: {functions: [pg_terminate_backend]}
            who: {users: [dba]}
          - id: no-functions
            action: deny
            match: {functions: ['*']}
        """,
    )
    dba = replace(APP, user="dba")
    assert action(p, stmt("select", functions=("pg_terminate_backend",)), who=dba) == "allow"
    both = stmt("select", functions=("pg_terminate_backend", "lo_unlink"))
    assert action(p, both, who=dba) == "deny"  # the allow does not cover lo_unlink
    assert action(p, stmt("select", functions=("lo_unlink",))) == "deny"
    assert action(p, stmt("select")) == "allow"


def test_users_databases_application_names(tmp_path: Path) -> None:
    p = deny_if(
        tmp_path,
        "    who: {users: ['intern_*', bob], databases: [prod], application_names: ['psql*']}\n",
    )
    psql = Principal("intern_joe", "prod", "psql 16")
    assert action(p, stmt("select"), who=psql) == "deny"
    assert action(p, stmt("select"), who=replace(psql, user="bob")) == "deny"
    assert action(p, stmt("select"), who=replace(psql, user="alice")) == "allow"
    assert action(p, stmt("select"), who=replace(psql, database="staging")) == "allow"
    assert action(p, stmt("select"), who=replace(psql, application_name="web")) == "allow"


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("10.1.2.3", "deny"),
        ("10.1.255.255", "deny"),
        ("10.2.0.1", "allow"),
        ("192.168.7.7", "deny"),
        ("192.168.7.8", "allow"),
        ("::ffff:10.1.9.9", "deny"),  # IPv4-mapped IPv6
        ("2001:db8::42", "deny"),
        ("2001:db9::1", "allow"),
        (None, "deny"),  # unix socket = local
        ("not-an-address", "allow"),
    ],
)
def test_client_cidrs(tmp_path: Path, addr: str | None, expected: str) -> None:
    p = deny_if(
        tmp_path,
        "    who: {client_addrs: ['10.1.0.0/16', 192.168.7.7, '2001:db8::/32', local]}\n",
    )
    assert action(p, stmt("select"), who=replace(APP, client_addr=addr)) == expected


def test_in_transaction_is_not_cacheable(tmp_path: Path) -> None:
    p = deny_if(tmp_path, "    match: {kinds: [drop_index]}\n    who: {in_transaction: false}\n")
    d = p.decide(one(stmt("drop_index")), APP, NOON)
    assert d.action is Action.DENY and not d.cacheable
    d = p.decide(one(stmt("drop_index")), replace(APP, in_transaction=True), NOON)
    assert d.action is Action.ALLOW and not d.cacheable
    # a rule whose facts did not match never consulted the transaction state
    assert p.decide(one(stmt("select")), APP, NOON).cacheable


def test_time_window_with_zone_and_dst(tmp_path: Path) -> None:
    p = deny_if(
        tmp_path,
        "    who:\n      during:\n"
        "        - {days: [mon-fri], hours: '09:00-18:00', timezone: Europe/Paris}\n",
    )
    # summer: Paris = UTC+2
    assert action(p, stmt("select"), now=datetime(2024, 6, 5, 6, 59, tzinfo=UTC)) == "allow"
    assert action(p, stmt("select"), now=datetime(2024, 6, 5, 7, 0, tzinfo=UTC)) == "deny"
    assert action(p, stmt("select"), now=datetime(2024, 6, 5, 15, 59, tzinfo=UTC)) == "deny"
    assert action(p, stmt("select"), now=datetime(2024, 6, 5, 16, 0, tzinfo=UTC)) == "allow"
    # winter: Paris = UTC+1
    assert action(p, stmt("select"), now=datetime(2024, 1, 10, 7, 30, tzinfo=UTC)) == "allow"
    assert action(p, stmt("select"), now=datetime(2024, 1, 10, 8, 0, tzinfo=UTC)) == "deny"
    # Saturday
    assert action(p, stmt("select"), now=datetime(2024, 6, 8, 10, 0, tzinfo=UTC)) == "allow"
    assert not p.decide(one(stmt("select")), APP, NOON).cacheable


def test_outside_office_hours_and_windows_past_midnight(tmp_path: Path) -> None:
    p = policy(
        tmp_path,
        """
        version: 1
        default: allow
        timezone: America/New_York
        rules:
          - id: night
            action: hold
            match: {kinds: [drop_index]}
            who: {during: [{days: [fri], hours: '22:00-02:00'}]}
          - id: after-hours
            action: deny
            match: {kinds: [drop_index]}
            who: {outside: [{days: [mon-fri], hours: '08:00-20:00'}]}
        """,
    )

    def at(y: int, mo: int, d: int, h: int, mi: int = 0) -> str:
        from zoneinfo import ZoneInfo

        now = datetime(y, mo, d, h, mi, tzinfo=ZoneInfo("America/New_York"))
        return action(p, stmt("drop_index"), now=now)

    assert at(2024, 6, 7, 23) == "hold"  # Friday 23:00
    assert at(2024, 6, 8, 1, 59) == "hold"  # Saturday 01:59 still in Friday's window
    assert at(2024, 6, 8, 2, 0) == "deny"  # Saturday, outside office hours
    assert at(2024, 6, 6, 23) == "deny"  # Thursday night: not Friday's window
    assert at(2024, 6, 6, 12) == "allow"  # Thursday noon: office hours
    assert at(2024, 6, 7, 1) == "deny"  # Friday 01:00 belongs to Thursday: no window


def test_naive_now_is_taken_as_utc(tmp_path: Path) -> None:
    p = deny_if(tmp_path, "    who: {during: [{hours: '12:00-13:00', timezone: UTC}]}\n")
    assert action(p, stmt("select"), now=datetime(2024, 6, 5, 12, 30)) == "deny"


def test_function_call_needs_an_allow_rule(tmp_path: Path) -> None:
    p = policy(
        tmp_path,
        """
        version: 1
        default: allow
        rules:
          - id: intern-nothing
            action: deny
            who: {users: [intern]}
          - id: lo-read
            action: allow
            match: {kinds: [function_call], oids: [954]}
          - id: select-is-fine
            action: allow
            match: {kinds: [select]}
        """,
    )
    d = p.decide_function_call(954, APP, NOON)
    assert (d.action, d.rule) == (Action.ALLOW, "lo-read")
    d = p.decide_function_call(955, APP, NOON)
    assert (d.action, d.rule) == (Action.DENY, "function_call")  # default allow not used
    d = p.decide_function_call(954, replace(APP, user="intern"), NOON)
    assert (d.action, d.rule) == (Action.DENY, "intern-nothing")
    # an oids condition never matches an SQL statement
    assert p.decide(one(stmt("select")), APP, NOON).rule == "select-is-fine"


def test_objects_any_for_deny_every_for_allow(tmp_path: Path) -> None:
    p = policy(
        tmp_path,
        """
        version: 1
        default: allow
        rules:
          - id: scratch-schemas-may-go
            action: allow
            match: {kinds: [drop_schema], objects: ['scratch_*']}
          - id: no-drop-schema
            action: deny
            match: {kinds: [drop_schema]}
          - id: protect-app-role
            action: deny
            match: {objects: [app]}
        """,
    )
    assert action(p, stmt("drop_schema", objects=("scratch_1",))) == "allow"
    assert action(p, stmt("drop_schema", objects=("scratch_1", "public"))) == "deny"
    assert action(p, stmt("drop_schema")) == "deny"
    assert action(p, stmt("drop_role", objects=("app", "bob"))) == "deny"
    assert action(p, stmt("drop_role", objects=("bob",))) == "allow"
