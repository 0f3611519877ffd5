"""Helpers for the policy tests: write a policy file, build facts and principals.

Owns nothing the product uses. Must not mock the analysis or the policy engine.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

from pgsentry.analysis.facts import Analysis, Relation, StatementFacts
from pgsentry.policy import Policy, Principal, load_policy

NOON = datetime(2024, 6, 5, 12, 0, tzinfo=UTC)  # a Wednesday
APP = Principal(user="app", database="prod", application_name="web", client_addr="10.0.0.5")


def write(tmp: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def policy(tmp: Path, text: str) -> Policy:
    return load_policy(write(tmp, text))


def rel(dotted: str) -> Relation:
    schema, _, name = dotted.rpartition(".")
    return Relation(schema or None, name)


def stmt(kind: str, *rels: str, **kw: object) -> StatementFacts:
    return StatementFacts(kind, relations=tuple(rel(r) for r in rels), **kw)  # type: ignore[arg-type]


def one(*statements: StatementFacts) -> Analysis:
    return Analysis(statements=statements)
