"""StartupMessage.settings(): the settings a login makes, read as the server reads them."""

from __future__ import annotations

import pytest

from pgsentry.wire.errors import ProtocolError
from pgsentry.wire.startup import StartupMessage, split_options


def _settings(**params: str) -> list[tuple[str, str]]:
    return StartupMessage(3, 0, {"user": "u", "database": "d", **params}).settings()


def test_every_parameter_but_user_database_replication_and_options_is_a_setting() -> None:
    got = _settings(replication="database", application_name="psql", DateStyle="ISO")
    assert got == [("application_name", "psql"), ("datestyle", "ISO")]


def test_protocol_options_are_not_settings() -> None:
    assert _settings(**{"_pq_.something": "1"}) == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("-c a=1", [("a", "1")]),
        ("-ca=1", [("a", "1")]),
        ("--a-b=1", [("a_b", "1")]),
        ("-c  a=1   -c b=2", [("a", "1"), ("b", "2")]),
        (r"-c search_path=a\ b", [("search_path", "a b")]),
        ("-c Session_Replication_Role=replica", [("session_replication_role", "replica")]),
        ("-c a=", [("a", "")]),
        ("", []),
    ],
)
def test_options_are_split_like_the_server(options: str, expected: list[tuple[str, str]]) -> None:
    assert _settings(options=options) == expected


@pytest.mark.parametrize("options", ["-O", "-F", "-B 100", "-c", "-c a", "--a", "dbname", "-P"])
def test_other_switches_are_refused(options: str) -> None:
    with pytest.raises(ProtocolError):
        _settings(options=options)


def test_split_options_keeps_escaped_characters() -> None:
    assert split_options(r"a\\b c\ d  e") == ["a\\b", "c d", "e"]
    assert split_options(" \t\n ") == []
    assert split_options("-c a=b\\") == ["-c", "a=b"]  # a lone trailing backslash: dropped
