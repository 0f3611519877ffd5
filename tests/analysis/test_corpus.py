"""The statement corpora (tests/corpus/*.yaml) against analyze(): facts as expected.

The same files drive the live proxy tests; here only the analysis is checked: dangerous
entries carry the expected dangerous facts, benign entries carry none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pgsentry.analysis import Analysis, WhereClause, analyze
from pgsentry.analysis.kinds import KINDS

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
DANGEROUS: list[dict[str, Any]] = yaml.safe_load((CORPUS / "dangerous.yaml").read_text())
BENIGN: list[dict[str, Any]] = yaml.safe_load((CORPUS / "benign.yaml").read_text())
_FIELDS = {
    "id", "sql", "expect_kinds", "where", "functions", "dynamic_sql", "cascade",
    "parse_error", "scs_off", "creates", "needs",
}  # fmt: skip

# Kinds that, with the shipped policies, need no further fact to be refused.
DANGEROUS_KINDS = {
    "truncate", "drop_table", "drop_schema", "drop_database", "drop_owned", "drop_role",
    "drop_index", "drop_view", "drop_sequence", "drop_function", "drop_trigger",
    "drop_extension", "copy_from_program", "copy_to_program", "alter_table_disable_trigger",
    "alter_table_drop_column", "alter_table_drop_constraint", "alter_table_drop_default",
    "create_rule", "alter_system", "alter_table_alter_column_type", "alter_table_disable_rule",
    "alter_table_set_unlogged", "alter_table_disable_rls", "weaken_policy", "copy_from_file",
    "copy_to_file", "drop_rule", "disable_event_trigger", "alter_domain_drop_constraint",
    "alter_domain_drop_default", "role_bypass_rls", "write_catalog",
}  # fmt: skip


def _run(entry: dict[str, Any]) -> Analysis:
    return analyze(entry["sql"], standard_conforming_strings=not entry.get("scs_off", False))


def test_corpus_sizes_and_fields() -> None:
    assert len(DANGEROUS) >= 90
    assert len(BENIGN) >= 90
    ids = [e["id"] for e in DANGEROUS + BENIGN]
    assert len(ids) == len(set(ids))
    for entry in DANGEROUS + BENIGN:
        assert set(entry) <= _FIELDS, entry["id"]
        assert all(k in KINDS for k in entry["expect_kinds"]), entry["id"]


def _check_expected(entry: dict[str, Any], result: Analysis) -> None:
    if entry.get("parse_error"):
        assert result.parse_error is not None
        assert result.statements == ()
        return
    assert result.parse_error is None, result.parse_error
    assert [s.kind for s in result.statements] == entry["expect_kinds"]
    if "where" in entry:
        first = next(s for s in result.statements if s.kind in ("delete", "update", "merge"))
        assert first.where == WhereClause(entry["where"])
    flagged = {f for s in result.statements for f in s.functions}
    assert set(entry.get("functions", [])) <= flagged
    if "dynamic_sql" in entry:
        assert any(s.dynamic_sql for s in result.statements) == entry["dynamic_sql"]
    if "cascade" in entry:
        assert any(s.cascade for s in result.statements) == entry["cascade"]


@pytest.mark.parametrize("entry", DANGEROUS, ids=[e["id"] for e in DANGEROUS])
def test_dangerous(entry: dict[str, Any]) -> None:
    result = _run(entry)
    _check_expected(entry, result)
    if result.parse_error is not None:
        return
    # every entry carries at least one fact that makes it refusable
    dangerous = [
        s
        for s in result.statements
        if s.kind in DANGEROUS_KINDS
        or s.where in (WhereClause.MISSING, WhereClause.TAUTOLOGICAL)
        or s.dynamic_sql
        or s.functions
        or (s.origin in ("function_body", "do_block") and s.kind != "select")
    ]
    assert dangerous, entry["id"]


@pytest.mark.parametrize("entry", BENIGN, ids=[e["id"] for e in BENIGN])
def test_benign(entry: dict[str, Any]) -> None:
    result = _run(entry)
    _check_expected(entry, result)
    for s in result.statements:
        assert s.kind not in DANGEROUS_KINDS
        assert s.where in (None, WhereClause.PRESENT)
        assert not s.dynamic_sql
        assert s.functions == ()
        assert not s.cascade
