"""Caches and the fast path give exactly the full analysis; analyze never raises."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgsentry.analysis import analyzer, lexical
from pgsentry.analysis.analyzer import _full, analyze, cache_sizes, clear_cache


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_cache()


def full(sql: str, scs: bool = True) -> object:
    return _full(sql, scs, None)


def test_repeated_text_is_the_cached_object() -> None:
    a = analyze("SELECT * FROM accounts WHERE id = 1")
    assert analyze("SELECT * FROM accounts WHERE id = 1") is a


def test_fast_path_serves_new_texts_of_a_known_shape() -> None:
    first = analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 1")
    assert cache_sizes()[1] == 1
    second = analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 99")
    assert second is first  # one shared Analysis for the shape
    assert second.statements[0].text == "SELECT abalance FROM pgbench_accounts WHERE aid = $1"


TEMPLATES = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = {a}",
    "UPDATE pgbench_accounts SET abalance = abalance + {a} WHERE aid = {b}",
    "DELETE FROM accounts WHERE id = {a}",
    "DELETE FROM accounts WHERE {a} = {b}",
    "DELETE FROM accounts WHERE id = {a} OR {a} = {b}",
    "UPDATE accounts SET balance = 0 WHERE {a}::bool",
    "DELETE FROM accounts WHERE id > {a} AND {b} IN ({a}, 3)",
    "DELETE FROM accounts WHERE owner LIKE '{s}'",
    "DELETE FROM accounts WHERE arr[{a}] = arr[{b}]",
    "SELECT set_config('{s}', 'replica', false)",
    "SELECT set_config(name, 'replica', false) FROM pg_settings WHERE name = '{s}'",
    "SELECT * FROM accounts WHERE owner = '{s}' LIMIT {a}",
    "INSERT INTO accounts VALUES ({a}, '{s}', {b})",
    "DELETE FROM accounts WHERE (id = id) = {t}",
    "DELETE FROM accounts WHERE coalesce({t}, false)",
    "DELETE FROM accounts WHERE 0.{b} + 0.2 = 0.3",
    "DELETE FROM accounts WHERE {a} + 2147483647 > {b}",
    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs LIMIT {a})",
    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs OFFSET {a})",
    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE {t})",
    "DELETE FROM accounts USING (VALUES ({a})) s(k) WHERE s.k = {b}",
    "DELETE FROM accounts USING (SELECT {a}) s WHERE id = {b}",
    "UPDATE accounts SET owner = '{s}' FROM orders o WHERE o.total > {a}",
    "DELETE FROM accounts WHERE EXISTS (SELECT 1 FROM orders o WHERE o.id = {a})",
]
VALUES = {
    "a": ["1", "2", "0", "-1", "$1"],
    "b": ["1", "2", "3"],
    "s": ["%", "session_replication_role", "a%", "search_path", "%%"],
    "t": ["true", "false", "null", "1", "'t'"],
}


def _texts(template: str) -> list[str]:
    names = [n for n in "abst" if "{" + n + "}" in template]
    out = []
    for combo in itertools.product(*(VALUES[n] for n in names)):
        out.append(template.format(**dict(zip(names, combo, strict=True))))
    return out


@pytest.mark.parametrize("template", TEMPLATES)
def test_fast_path_agrees_with_full_analysis(template: str) -> None:
    texts = _texts(template)
    for order in (texts, list(reversed(texts))):
        clear_cache()
        for sql in order:
            got = analyze(sql)
            expected = full(sql)
            assert got.parse_error == expected.parse_error, sql  # type: ignore[attr-defined]
            assert got.session_effects == expected.session_effects, sql  # type: ignore[attr-defined]
            strip = [s.__class__(**{**_fields(s), "text": ""}) for s in got.statements]
            want = [s.__class__(**{**_fields(s), "text": ""}) for s in expected.statements]  # type: ignore[attr-defined]
            assert strip == want, sql


def _fields(s: object) -> dict[str, object]:
    return {name: getattr(s, name) for name in s.__slots__}  # type: ignore[attr-defined]


def test_dangerous_text_never_matches_a_harmless_shape() -> None:
    analyze("SELECT * FROM accounts WHERE id = 1")
    for sql in (
        "SELECT * FROM accounts WHERE id = 1; DROP TABLE accounts",
        "SELECT * FROM accounts WHERE id = 1 -- x\n; DROP TABLE accounts",
        "SELECT * FROM accounts WHERE id = pg_terminate_backend(1)",
        "SELECT * FROM accounts WHERE id = 1\x00; DROP TABLE accounts",
    ):
        kinds_or_error = analyze(sql)
        assert (
            kinds_or_error.parse_error
            or len(kinds_or_error.statements) > 1
            or (kinds_or_error.statements[0].functions)
        ), sql


def test_shape_is_not_reused_when_scs_off_and_text_has_backslash() -> None:
    analyze("SELECT * FROM accounts WHERE owner = 'a'")
    result = analyze(
        "SELECT * FROM accounts WHERE owner = 'a\\'", standard_conforming_strings=False
    )
    assert result.parse_error is not None


def test_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analyzer, "TEXT_CACHE_SIZE", 10)
    monkeypatch.setattr(analyzer, "SHAPE_CACHE_SIZE", 3)
    for i in range(50):
        analyze(f"SELECT {i}")
        analyze(f"SELECT {i} FROM t{i}")
    texts, shapes = cache_sizes()
    assert texts <= 10
    assert shapes <= 3


def test_clear_cache_forgets() -> None:
    analyze("SELECT 1")
    clear_cache()
    assert cache_sizes() == (0, 0)


_PIECES = [
    *"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789'\"$;:()[]{},.*=<>!-+/\\\n\t%&|#@?^~`",
    " select ",
    " drop table ",
    " delete from ",
    " where ",
    " do $$ ",
    " $$ ",
    " begin ",
    " end ",
    "$x$",
    " with ",
    " as ",
    "\x00",
    "é",
    "\udc80",
    " execute ",
    " 1=1 ",
]
SQLISH = st.lists(st.sampled_from(_PIECES), max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(SQLISH, st.booleans())
def test_analyze_never_raises(sql: str, scs: bool) -> None:
    result = analyze(sql, standard_conforming_strings=scs)
    assert (result.parse_error is None) or (result.statements == ())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.booleans())
def test_analyze_never_raises_on_any_text(sql: str, scs: bool) -> None:
    analyze(sql, standard_conforming_strings=scs)


def test_deeply_nested_expression_fails_closed() -> None:
    sql = "SELECT " + "(" * 5000 + "1" + ")" * 5000
    result = analyze(sql)
    assert result.parse_error is not None or result.statements


def _corpus_texts() -> list[str]:
    import pathlib

    import yaml

    root = pathlib.Path(__file__).parent.parent / "corpus"
    out = []
    for name in ("benign.yaml", "dangerous.yaml"):
        for entry in yaml.safe_load((root / name).read_text()):
            if lexical.lexical_key(entry["sql"]) is not None:
                out.append(entry["sql"])
    return out


CORPUS_LEXICAL = _corpus_texts()


def _vary(sql: str, number: str, string: str) -> str:
    return lexical._CONSTANT.sub(lambda m: string if m.group(0).startswith("'") else number, sql)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(CORPUS_LEXICAL),
    st.sampled_from(["0", "1", "2", "42", "1.5", "007"]),
    st.sampled_from(["''", "'x'", "'1=1'", "'session_replication_role'", "'a''b'", "'%'"]),
    st.sampled_from(["3", "1"]),
    st.sampled_from(["'y'", "'true'"]),
)
def test_lexical_shape_agrees_with_full_analysis(
    sql: str, n1: str, s1: str, n2: str, s2: str
) -> None:
    """A literal variant of a corpus text served from the lexical shape cache has exactly
    the facts a full analysis of that variant gives."""
    clear_cache()
    analyze(_vary(sql, n1, s1))  # warms the caches with one variant
    other = _vary(sql, n2, s2)
    got, want = analyze(other), full(other)
    assert got.parse_error == want.parse_error, other  # type: ignore[attr-defined]
    assert [_fields(s) | {"text": ""} for s in got.statements] == [
        _fields(s) | {"text": ""}
        for s in want.statements  # type: ignore[attr-defined]
    ], other


def test_lexical_key_only_for_the_plain_alphabet() -> None:
    analyze("SELECT * FROM accounts WHERE id = 1")
    assert analyzer._lexical  # the plain text was keyed
    for odd in (
        'SELECT * FROM "accounts" WHERE id = \'2"\'',
        "SELECT * FROM accounts WHERE id = $1",
        "SELECT * FROM accounts WHERE id = 2 -- ; DROP TABLE accounts",
        "SELECT * FROM accounts WHERE id = 2 /* x */",
        "SELECT * FROM accounts\u00a0WHERE id = 2",
    ):
        assert lexical.lexical_key(odd) is None, odd
        assert lexical.py_lexical_key(odd) is None, odd


_LEXICAL_ALPHABET = "AZaz09_ \t\n\r,.()=<>*+-;'" + "0123456789.'" + '"""$/-é\x00\x7f'


@settings(max_examples=3000, deadline=None)
@given(st.text(st.sampled_from(_LEXICAL_ALPHABET)) | st.text())
def test_native_lexical_key_equals_the_regular_expressions(text: str) -> None:
    """The C lexer and its Python twin agree on every text (numbers, fractions, word
    boundaries, closed and unclosed strings, characters outside the alphabet)."""
    assert lexical.NATIVE, "the C extension pgsentry.analysis._lexical was not built"
    assert lexical.lexical_key(text) == lexical.py_lexical_key(text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("SELECT abalance FROM t WHERE aid = 48213;", "SELECT abalance FROM t WHERE aid = ?;"),
        ("SELECT 1.5, 1.5x, x1, 1e3, 'its'", "SELECT ?, ?.5x, x1, 1e3, ?"),
        ("SELECT 'its", None),  # a quote that is not closed
        ('SELECT "a"."id" FROM "t" WHERE "b" = 7', 'SELECT "a"."id" FROM "t" WHERE "b" = ?'),
        ('SELECT "a""b", "x1"1', 'SELECT "a""b", "x1"?'),  # identifiers are kept verbatim
        ('SELECT "it\'s"', None),  # a quote inside an identifier
        ("SELECT 'say \"hi\"'", None),  # a double quote inside a string
        ('SELECT "unclosed', None),
        ('SELECT "a--b"', None),
        ("SELECT 'it''s'", None),  # one string to PostgreSQL: adjacent constants, no key
        ("SELECT 1'a'", None),  # a syntax error that would otherwise share the key above
        ("SELECT 'a'1", None),
        ("UPDATE t SET b = b + -4032 WHERE a = 7", "UPDATE t SET b = b + -? WHERE a = ?"),
        ("SELECT 1 -- x", None),
        ("SELECT 'żółw'", None),
        ("x" * 2000 + " = 1", "x" * 2000 + " = ?"),
    ],
)
def test_lexical_key_examples(text: str, key: str | None) -> None:
    assert lexical.lexical_key(text) == key
    assert lexical.py_lexical_key(text) == key
