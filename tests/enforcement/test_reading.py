"""What decides how the server reads a statement, with the shipped policies and real clients.

The server reads a text with the session's standard_conforming_strings and client_encoding,
and a login sets whatever its parameters and options say. None of these may let a statement
that pgsentry reads as harmless run as something else: settings made at login are judged as
the same SET; a text whose reading is not known when it is judged (pipelined behind a
statement that may change the setting, or a code body that runs later) is read both ways;
client-only encodings are refused. Every effect is read directly on the cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from integration import rawpg
from integration.helpers import run_client

from pgsentry.devtools import PgCluster, ProxyProcess

from .support import FIXTURE_DB, direct_fetch, reset_schema

pytestmark = pytest.mark.timeout(60)

Denied = psycopg.errors.InsufficientPrivilege

# Harmless with standard_conforming_strings on (a string, then a dollar-quoted string);
# with it off the first string runs to the second quote and DROP TABLE is a statement.
AMBIGUOUS = "SELECT 'a\\' , $$'; DROP TABLE accounts; --$$"


@pytest.fixture(autouse=True)
def _fresh_schema(fixture_db: PgCluster) -> Iterator[None]:
    yield
    reset_schema(fixture_db)


def _accounts_exist(pg: PgCluster) -> bool:
    return direct_fetch(pg, "SELECT to_regclass('accounts') IS NOT NULL")[0][0] is True


def _connect(proxy: ProxyProcess, **kwargs: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(proxy.dsn(dbname=FIXTURE_DB), autocommit=True, **kwargs)


# ------------------------------------------------------------------ settings made at login


def test_a_dangerous_setting_in_options_refuses_the_connection(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    with pytest.raises(psycopg.OperationalError, match="session_replication_role"):
        _connect(shipped_proxy, options="-c session_replication_role=replica")
    with pytest.raises(psycopg.OperationalError, match="session_replication_role"):
        _connect(shipped_proxy, options="--session-replication-role=replica")


def test_psql_with_pgoptions_is_refused_and_harmless_options_work(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    args = ["-X", "-h", shipped_proxy.host, "-p", str(shipped_proxy.port), "-U", "postgres"]
    args += ["-d", FIXTURE_DB, "-Atc", "SHOW session_replication_role"]
    refused = run_client(
        fixture_db, "psql", args, check=False, PGOPTIONS="-c session_replication_role=replica"
    )
    assert refused.returncode != 0
    assert b"connection setting session_replication_role='replica' refused" in refused.stderr
    ok = run_client(
        fixture_db, "psql", args, PGOPTIONS="-c search_path=public -c statement_timeout=5s"
    )
    assert ok.stdout.decode().strip() == "origin"


def test_a_startup_parameter_is_judged_like_options(shipped_proxy: ProxyProcess) -> None:
    with rawpg.RawConn(shipped_proxy.host, shipped_proxy.port) as conn:
        conn.send(rawpg.startup_message(database=FIXTURE_DB, session_replication_role="replica"))
        msgs = conn.read_to_close()
    assert [m.kind for m in msgs] == [b"E"]
    assert msgs[0].fields["S"] == "FATAL"
    assert msgs[0].sqlstate == "42501"


def test_other_server_switches_in_options_are_refused(shipped_proxy: ProxyProcess) -> None:
    # -O is allow_system_table_mods: pgsentry passes only -c / --name=value.
    with pytest.raises(psycopg.OperationalError, match="only -c name=value"):
        _connect(shipped_proxy, options="-O")


# ------------------------------------------------------------------ standard_conforming_strings


def test_a_query_pipelined_behind_a_setting_change_is_read_both_ways(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    with rawpg.RawConn(shipped_proxy.host, shipped_proxy.port) as conn:
        conn.login(database=FIXTURE_DB)
        conn.send(rawpg.query("SET standard_conforming_strings = off") + rawpg.query(AMBIGUOUS))
        first = conn.read_until([b"Z"])
        second = conn.read_until([b"Z"])
    assert [m.kind for m in first] == [b"C", b"S", b"Z"]  # ParameterStatus after the SET
    assert second[0].kind == b"E" and second[0].sqlstate == "42501"
    assert _accounts_exist(fixture_db)


def test_a_harmless_pipelined_query_with_backslashes_still_runs(
    shipped_proxy: ProxyProcess,
) -> None:
    with rawpg.RawConn(shipped_proxy.host, shipped_proxy.port) as conn:
        conn.login(database=FIXTURE_DB)
        conn.send(rawpg.query("SELECT 1") + rawpg.query("SELECT 'C:\\temp' AS path"))
        conn.read_until([b"Z"])
        rows = [m for m in conn.read_until([b"Z"]) if m.kind == b"D"]
    assert len(rows) == 1


def test_a_body_that_reads_otherwise_with_the_setting_off_is_refused(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    body = AMBIGUOUS.replace("$$", "$q$")
    with _connect(shipped_proxy) as conn:
        with pytest.raises(Denied):
            conn.execute(f"CREATE FUNCTION harmless() RETURNS void LANGUAGE sql AS $f${body}$f$")
        conn.execute("SET standard_conforming_strings = off")
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute("SELECT harmless()")
    assert _accounts_exist(fixture_db)


def test_a_body_whose_value_changes_with_the_setting_is_judged_in_both(
    shipped_proxy: ProxyProcess,
) -> None:
    # Off, E'...' reads '\a' as 'a': the body would set session_replication_role.
    sql = (
        "CREATE FUNCTION quiet() RETURNS text LANGUAGE sql AS "
        "$f$SELECT set_config('session_replic\\ation_role', 'replica', false)$f$"
    )
    with _connect(shipped_proxy) as conn, pytest.raises(Denied):
        conn.execute(sql)


def test_a_function_with_a_regular_expression_is_created(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    with _connect(shipped_proxy) as conn:
        conn.execute(
            "CREATE FUNCTION squash(t text) RETURNS text LANGUAGE plpgsql AS "
            "$f$BEGIN RETURN regexp_replace(t, '\\s+', ' ', 'g'); END$f$"
        )
        assert conn.execute("SELECT squash('a   b')").fetchone() == ("a b",)
    fixture_db.psql("DROP FUNCTION squash(text)", dbname=FIXTURE_DB)


# ------------------------------------------------------------------ client_encoding


def test_a_client_only_encoding_at_login_is_refused(shipped_proxy: ProxyProcess) -> None:
    with pytest.raises(psycopg.OperationalError, match="client_encoding"):
        _connect(shipped_proxy, client_encoding="SJIS")


def test_set_client_encoding_to_a_client_only_encoding_is_denied(
    shipped_proxy: ProxyProcess,
) -> None:
    with _connect(shipped_proxy) as conn:
        for sql in (
            "SET client_encoding = 'SJIS'",
            "SET NAMES 'big5'",
            "SELECT set_config('client_encoding', 'GBK', false)",
        ):
            with pytest.raises(Denied):
                conn.execute(sql)
        conn.execute("SET client_encoding = 'LATIN1'")
        conn.execute("SET client_encoding = 'UTF8'")


def test_a_session_in_a_client_only_encoding_runs_only_ascii(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    # The role's default, set directly: pgsentry learns it from the server at login.
    role = "pgsentry_sjis_role"
    fixture_db.psql(f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN")
    fixture_db.psql(f"ALTER ROLE {role} SET client_encoding = 'SJIS'")
    try:
        evil = "SELECT E'\xc3\x81\\'; DROP TABLE accounts; --'".encode("latin-1")
        with rawpg.RawConn(shipped_proxy.host, shipped_proxy.port) as conn:
            conn.login(user=role, database=FIXTURE_DB)
            assert conn.parameters["client_encoding"] == "SJIS"
            conn.send(rawpg.message(b"Q", evil + b"\0"))
            refused = conn.read_until([b"Z"])
            conn.send(rawpg.query("SELECT 1"))
            ran = conn.read_until([b"Z"])
        assert refused[0].kind == b"E" and refused[0].sqlstate == "42501"
        assert [m.kind for m in ran] == [b"T", b"D", b"C", b"Z"]
        assert _accounts_exist(fixture_db)
    finally:
        fixture_db.psql(f"DROP ROLE {role}")


def test_a_pipelined_text_behind_a_function_that_may_set_the_encoding_is_refused(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    # pgsentry refuses to create such a function; one made before it was in place exists.
    fixture_db.psql(
        "CREATE FUNCTION public.to_sjis() RETURNS void LANGUAGE plpgsql AS "
        "$f$BEGIN PERFORM set_config('client_encoding', 'SJIS', false); END$f$",
        dbname=FIXTURE_DB,
    )
    try:
        evil = "SELECT E'\xe3\x81\x83\\'; DROP TABLE accounts; --'".encode("latin-1")
        with rawpg.RawConn(shipped_proxy.host, shipped_proxy.port) as conn:
            conn.login(database=FIXTURE_DB)
            conn.send(rawpg.query("SELECT public.to_sjis()") + rawpg.message(b"Q", evil + b"\0"))
            conn.read_until([b"Z"])
            refused = conn.read_until([b"Z"])
        assert refused[0].kind == b"E" and refused[0].sqlstate == "42501"
        assert _accounts_exist(fixture_db)
    finally:
        fixture_db.psql("DROP FUNCTION public.to_sjis()", dbname=FIXTURE_DB)


@pytest.mark.parametrize(
    ("encoding", "text"), [("LATIN1", "café"), ("WIN1252", "€uro"), ("EUC_JP", "日本")]
)
def test_single_byte_and_euc_sessions_read_their_own_text(
    shipped_proxy: ProxyProcess, encoding: str, text: str
) -> None:
    with _connect(shipped_proxy, client_encoding=encoding) as conn:
        assert conn.execute(f"SELECT '{text}'").fetchone() == (text,)
        assert conn.execute("SELECT %s::text", [text]).fetchone() == (text,)


def test_a_query_pipelined_behind_the_login_is_read_both_ways(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    # The setting is allowed at login, and the server reads the Query with it: pgsentry
    # learns it only from the ParameterStatus sent just before the login's ReadyForQuery.
    startup = rawpg.startup_message(database=FIXTURE_DB, standard_conforming_strings="off")
    with rawpg.RawConn(shipped_proxy.host, shipped_proxy.port) as conn:
        conn.send(startup + rawpg.query(AMBIGUOUS))
        login = conn.read_until([b"Z"])
        answer = conn.read_until([b"Z"])
    assert conn.parameters["standard_conforming_strings"] == "off"
    assert login[-1].kind == b"Z"
    assert answer[0].kind == b"E" and answer[0].sqlstate == "42501"
    assert _accounts_exist(fixture_db)
