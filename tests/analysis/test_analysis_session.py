"""Session effects and standard_conforming_strings handling."""

from __future__ import annotations

import pytest

from pgsentry.analysis import analyze


@pytest.mark.parametrize(
    ("sql", "effects"),
    [
        ("SET search_path = app, public", [("set", "search_path")]),
        ("SET LOCAL search_path TO app", [("set", "search_path")]),
        ("RESET search_path", [("reset", "search_path")]),
        ("RESET ALL", [("reset", "all"), ("set_scs", "default")]),
        ("SELECT set_config('search_path', 'app', false)", [("set", "search_path")]),
        (
            "SET standard_conforming_strings = off",
            [("set", "standard_conforming_strings"), ("set_scs", "off")],
        ),
        (
            "SET standard_conforming_strings TO on",
            [("set", "standard_conforming_strings"), ("set_scs", "on")],
        ),
        (
            "SET standard_conforming_strings = 1",
            [("set", "standard_conforming_strings"), ("set_scs", "on")],
        ),
        (
            "SET standard_conforming_strings = 0",
            [("set", "standard_conforming_strings"), ("set_scs", "off")],
        ),
        (
            "SET standard_conforming_strings TO DEFAULT",
            [("set", "standard_conforming_strings"), ("set_scs", "default")],
        ),
        (
            "SELECT set_config('standard_conforming_strings', 'off', false)",
            [("set", "standard_conforming_strings"), ("set_scs", "off")],
        ),
        ("SELECT set_config($1, $2, false)", [("set", "*"), ("set_scs", "off")]),
        ("PREPARE q AS SELECT 1", [("prepare", "q")]),
        ("EXECUTE q", [("execute", "q")]),
        ("DEALLOCATE q", [("deallocate", "q")]),
        ("DEALLOCATE PREPARE q", [("deallocate", "q")]),
        ("DEALLOCATE ALL", [("deallocate", "*")]),
        ("DISCARD ALL", [("discard", "all")]),
        ("DISCARD PLANS", [("discard", "plans")]),
        ("DISCARD TEMP", [("discard", "temp")]),
        ("SELECT 1", []),
    ],
)
def test_session_effects(sql: str, effects: list[tuple[str, str]]) -> None:
    result = analyze(sql)
    assert result.parse_error is None
    assert list(result.session_effects) == effects


def test_effects_of_every_statement_in_order() -> None:
    result = analyze("PREPARE a AS SELECT 1; EXECUTE a; DEALLOCATE a; SET search_path = x")
    assert result.session_effects == (
        ("prepare", "a"),
        ("execute", "a"),
        ("deallocate", "a"),
        ("set", "search_path"),
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'a\\'; DROP TABLE accounts; --'",
        "SELECT 'C:\\temp'",
        "SELECT N'x\\y'",
        "SELECT U&'\\0041'",
        "DO $$ BEGIN PERFORM 'a\\'; DROP TABLE accounts; --'; END $$",
    ],
)
def test_backslash_in_plain_literal_is_refused_when_scs_off(sql: str) -> None:
    off = analyze(sql, standard_conforming_strings=False)
    assert off.parse_error is not None
    assert off.statements == ()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT E'a\\'b'",
        "SELECT $$a\\b$$",
        'SELECT 1 AS "a\\b"',
        "SELECT 1 -- a\\b",
        "SELECT 'plain'",
    ],
)
def test_text_without_ambiguous_literals_is_analysed_when_scs_off(sql: str) -> None:
    assert analyze(sql, standard_conforming_strings=False).parse_error is None


def test_same_text_cached_separately_per_scs_setting() -> None:
    sql = "SELECT 'x\\y'"
    assert analyze(sql).parse_error is None
    assert analyze(sql, standard_conforming_strings=False).parse_error is not None
    assert analyze(sql).parse_error is None


def test_nul_byte_is_refused() -> None:
    # libpg_query would stop reading at the NUL and never see the DROP
    result = analyze("SELECT 1;\x00DROP TABLE accounts")
    assert result.parse_error is not None


def test_unparseable_text_reports_pglast_message() -> None:
    result = analyze("DROP TABEL accounts")
    assert result.statements == ()
    assert result.parse_error is not None and "syntax error" in result.parse_error


def test_text_that_is_not_utf8_encodable_is_refused() -> None:
    assert analyze("SELECT '\udc80'").parse_error is not None
