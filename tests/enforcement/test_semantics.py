"""What a refusal does on the wire, with the shipped policies and real clients.

A Query with one denied statement runs none of them; a denied Parse fails its batch and
only its batch, as a server error would (pipelines included); inside a transaction block
the server's transaction is aborted too, so a later COMMIT answers ROLLBACK; every client
sees an ordinary error (SQLSTATE 42501, the rule, a hint) and keeps a usable session.
Every effect is read directly on the cluster, not through the proxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg  # type: ignore[import-untyped]
import psycopg
import pytest
from integration import rawpg
from integration.helpers import run_client
from psycopg.pq import TransactionStatus

from pgsentry.devtools import PgCluster, ProxyProcess

from .support import FIXTURE_DB, direct_fetch, reset_schema, snapshot

pytestmark = pytest.mark.timeout(60)

Denied = psycopg.errors.InsufficientPrivilege


@pytest.fixture(autouse=True)
def _fresh_schema(fixture_db: PgCluster) -> Iterator[None]:
    yield
    reset_schema(fixture_db)


def _connect(proxy: ProxyProcess) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(proxy.dsn(dbname=FIXTURE_DB), autocommit=True)


def _order_ids(pg: PgCluster, *ids: int) -> list[int]:
    rows = direct_fetch(pg, "SELECT id FROM orders WHERE id = ANY(%s) ORDER BY id", [list(ids)])
    return [r[0] for r in rows]


def _tables_intact(pg: PgCluster) -> None:
    rows = direct_fetch(pg, "SELECT count(*) FROM accounts")
    assert rows == [(62,)]


# ------------------------------------------------------------------ simple Query messages


def test_query_with_one_denied_statement_runs_none_of_them(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    with _connect(shipped_proxy) as conn:
        with pytest.raises(Denied):
            conn.execute("INSERT INTO orders VALUES (7001, 1, 1); DROP TABLE accounts")
        with pytest.raises(Denied):
            conn.execute("SELECT 1; INSERT INTO orders VALUES (7002, 1, 1); DELETE FROM accounts")
        assert conn.execute("SELECT count(*) FROM orders WHERE id > 7000").fetchone() == (0,)
    assert _order_ids(fixture_db, 7001, 7002) == []
    _tables_intact(fixture_db)


def test_psql_c_delete_from_accounts_is_stopped(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    args = ["-X", "-v", "VERBOSITY=verbose", "-h", shipped_proxy.host]
    args += ["-p", str(shipped_proxy.port), "-U", "postgres", "-d", FIXTURE_DB]
    proc = run_client(fixture_db, "psql", [*args, "-c", "DELETE FROM accounts"], check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "ERROR:  42501: pgsentry: statement denied by rule no-delete-without-where" in err
    assert "HINT:  " in err
    _tables_intact(fixture_db)
    # the same client, same proxy: an ordinary statement goes through
    ok = run_client(fixture_db, "psql", [*args, "-Atc", "SELECT count(*) FROM accounts"])
    assert ok.stdout.decode().strip() == "62"


# ------------------------------------------------------------------ extended protocol


def test_pipeline_denied_statement_rolls_back_its_batch(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    with _connect(shipped_proxy) as conn:
        with pytest.raises(Denied), conn.pipeline():
            conn.execute("INSERT INTO orders VALUES (7003, 1, 1)")
            conn.execute("DROP TABLE accounts")
            conn.execute("INSERT INTO orders VALUES (7004, 1, 1)")
        # the next pipeline on the same connection works
        with conn.pipeline():
            conn.execute("INSERT INTO orders VALUES (7005, 1, 1)")
            cur = conn.execute("SELECT count(*) FROM accounts")
        assert cur.fetchone() == (62,)
    assert _order_ids(fixture_db, 7003, 7004, 7005) == [7005]
    _tables_intact(fixture_db)


def test_pipeline_control_same_shape_with_a_real_server_error(fixture_db: PgCluster) -> None:
    """The reference the previous test is held to: PostgreSQL itself, no proxy."""
    conn = psycopg.connect(fixture_db.dsn(dbname=FIXTURE_DB), autocommit=True)
    with conn, pytest.raises(psycopg.errors.UndefinedTable), conn.pipeline():
        conn.execute("INSERT INTO orders VALUES (7003, 1, 1)")
        conn.execute("DROP TABLE no_such_table")
        conn.execute("INSERT INTO orders VALUES (7004, 1, 1)")
    assert _order_ids(fixture_db, 7003, 7004) == []


def _extended_batch(sql: str, name: str = "") -> bytes:
    return rawpg.parse(name, sql) + rawpg.bind("", name) + rawpg.execute("") + rawpg.sync()


def _kinds(msgs: list[rawpg.Msg]) -> str:
    return "".join(m.kind.decode() for m in msgs)


def _three_batches(host: str, port: int, second: str) -> tuple[list[str], list[rawpg.Msg]]:
    with rawpg.RawConn(host, port) as conn:
        conn.login(database=FIXTURE_DB)
        conn.send(  # one write: the proxy sees all three batches at once
            _extended_batch("INSERT INTO orders VALUES (7011, 1, 1)")
            + _extended_batch(second, "s2")
            + _extended_batch("INSERT INTO orders VALUES (7013, 1, 1)")
            + rawpg.bind("", "s2")  # the refused statement was never prepared
            + rawpg.execute("")
            + rawpg.sync()
        )
        batches = [_kinds(conn.read_until([b"Z"])) for _ in range(4)]
        assert not conn.buf, conn.buf  # nothing else came
        conn.send(rawpg.query("SELECT 1"))
        return batches, conn.read_until([b"Z"])


def test_pipelined_batches_only_the_denied_one_fails(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    proxied, after = _three_batches(shipped_proxy.host, shipped_proxy.port, "DROP TABLE accounts")
    assert _order_ids(fixture_db, 7011, 7013) == [7011, 7013]
    _tables_intact(fixture_db)
    reset_schema(fixture_db)
    # PostgreSQL answers a Parse it rejects itself (a syntax error) the same way.
    direct, _ = _three_batches(fixture_db.host, fixture_db.port, "DROP TABLE accounts oops")
    assert proxied == direct == ["12CZ", "EZ", "12CZ", "EZ"]
    assert "D" in _kinds(after)


def test_refused_parse_error_fields_and_skip_to_sync(shipped_proxy: ProxyProcess) -> None:
    with rawpg.RawConn(shipped_proxy.host, shipped_proxy.port) as conn:
        conn.login(database=FIXTURE_DB)
        conn.send(
            rawpg.parse("", "TRUNCATE accounts")
            + rawpg.describe(b"S", "")
            + rawpg.bind("", "")
            + rawpg.execute("")
            + rawpg.sync()
        )
        msgs = conn.read_until([b"Z"])
        assert _kinds(msgs) == "EZ"
        fields = msgs[0].fields
        assert fields["C"] == "42501"
        assert fields["S"] == "ERROR"
        assert "no-truncate" in fields["M"]
        assert fields.get("H")
        assert msgs[-1].payload == b"I"


# ------------------------------------------------------------------ transaction blocks


def _backend_state(pg: PgCluster, pid: int) -> str:
    rows = direct_fetch(pg, "SELECT state FROM pg_stat_activity WHERE pid = %s", [pid])
    return str(rows[0][0])


@pytest.mark.parametrize("prepare", [False, True], ids=["simple", "extended"])
def test_denial_in_transaction_aborts_the_server_transaction(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster, prepare: bool
) -> None:
    with _connect(shipped_proxy) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert pid is not None
        conn.execute("BEGIN", prepare=prepare)
        conn.execute("INSERT INTO orders VALUES (7021, 1, 1)", prepare=prepare)
        with pytest.raises(Denied):
            conn.execute("DROP TABLE accounts", prepare=prepare)
        status: TransactionStatus = conn.info.transaction_status
        assert status == TransactionStatus.INERROR
        # not only the client: the server's own transaction is aborted
        assert _backend_state(fixture_db, int(str(pid[0]))) == "idle in transaction (aborted)"
        cur = conn.execute("COMMIT", prepare=prepare)
        assert cur.statusmessage == "ROLLBACK"
        status = conn.info.transaction_status
        assert status == TransactionStatus.IDLE
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (62,)
    assert _order_ids(fixture_db, 7021) == []
    _tables_intact(fixture_db)


def test_psql_script_begin_insert_drop_commit(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    script = tmp_path_factory.mktemp("psql") / "script.sql"
    script.write_text(
        "BEGIN;\nINSERT INTO orders VALUES (7022, 1, 1);\nDROP TABLE accounts;\nCOMMIT;\n"
    )
    args = ["-X", "-h", shipped_proxy.host, "-p", str(shipped_proxy.port), "-U", "postgres"]
    proc = run_client(fixture_db, "psql", [*args, "-d", FIXTURE_DB, "-f", str(script)])
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert out.splitlines() == ["BEGIN", "INSERT 0 1", "ROLLBACK"], out
    assert "pgsentry: statement denied by rule no-drop-table" in err
    assert _order_ids(fixture_db, 7022) == []
    _tables_intact(fixture_db)


# ------------------------------------------------------------------ what each client shows


def test_psycopg_sees_an_ordinary_error(shipped_proxy: ProxyProcess) -> None:
    with _connect(shipped_proxy) as conn:
        with pytest.raises(Denied) as info:
            conn.execute("DROP TABLE accounts")
        exc = info.value
        assert exc.sqlstate == "42501"
        assert exc.diag.severity == "ERROR"
        assert exc.diag.message_primary == (
            "pgsentry: statement denied by rule no-drop-table: Dropping tables is not "
            "allowed through pgsentry; ask for an exception rule."
        )
        assert exc.diag.message_hint
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (62,)


def test_asyncpg_sees_an_ordinary_error(shipped_proxy: ProxyProcess) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(
            host=shipped_proxy.host, port=shipped_proxy.port, user="postgres",
            database=FIXTURE_DB, ssl=False,
        )  # fmt: skip
        try:
            for call in (conn.execute, conn.fetch):  # simple Query, then Parse/Bind/Execute
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError) as info:
                    await call("TRUNCATE accounts")
                assert info.value.sqlstate == "42501"
                assert "rule no-truncate" in info.value.message
                assert info.value.hint
                assert await conn.fetchval("SELECT count(*) FROM accounts") == 62
            async with conn.transaction():  # asyncpg's own BEGIN/COMMIT still work
                await conn.execute("INSERT INTO orders VALUES (7031, 1, 1)")
            assert await conn.fetchval("SELECT count(*) FROM orders WHERE id = 7031") == 1
        finally:
            await conn.close()

    asyncio.run(go())


# ------------------------------------------------------------------ hiding places


def _denied_rule(conn: psycopg.Connection[tuple[object, ...]], sql: str, prepare: bool) -> str:
    with pytest.raises(Denied) as info:
        conn.execute(sql, prepare=prepare)
    return str(info.value.diag.message_primary)


@pytest.mark.parametrize("prepare", [False, True], ids=["simple", "extended"])
def test_sql_level_prepare(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster, prepare: bool
) -> None:
    with _connect(shipped_proxy) as conn:
        rule = _denied_rule(conn, "PREPARE wipe AS DELETE FROM accounts", prepare)
        assert "no-delete-without-where" in rule
        with pytest.raises((psycopg.errors.InvalidSqlStatementName, Denied)):
            conn.execute("EXECUTE wipe", prepare=prepare)  # it was never prepared
        # a harmless prepared statement works, and so does its EXECUTE
        conn.execute("PREPARE get(int) AS SELECT owner FROM accounts WHERE id = $1")
        assert conn.execute("EXECUTE get(101)", prepare=prepare).fetchone() == ("alice",)
        conn.execute("PREPARE drop_one(int) AS DELETE FROM orders WHERE id = $1", prepare=prepare)
        assert conn.execute("EXECUTE drop_one(5)", prepare=prepare).rowcount == 1
        # a name freed by DEALLOCATE cannot come back as something dangerous
        conn.execute("DEALLOCATE get", prepare=prepare)
        wipe = "PREPARE get AS UPDATE accounts SET balance = 0 WHERE 1 = 1"
        assert "no-update-without-where" in _denied_rule(conn, wipe, prepare)
        with pytest.raises((psycopg.errors.InvalidSqlStatementName, Denied)):
            conn.execute("EXECUTE get", prepare=prepare)
    assert _order_ids(fixture_db, 5) == []
    _tables_intact(fixture_db)


def test_refused_prepare_leaves_the_servers_statement_usable(shipped_proxy: ProxyProcess) -> None:
    """A refused PREPARE never reached the server, so the name keeps meaning what the
    server has under it: EXECUTE of it must run as PostgreSQL would run it."""
    with _connect(shipped_proxy) as conn:
        conn.execute("PREPARE p AS SELECT count(*) FROM accounts")
        _denied_rule(conn, "PREPARE p AS DELETE FROM accounts", False)
        assert conn.execute("EXECUTE p").fetchone() == (62,)


@pytest.mark.parametrize("prepare", [False, True], ids=["simple", "extended"])
def test_do_blocks_and_data_modifying_cte(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster, prepare: bool
) -> None:
    before = snapshot(fixture_db)
    cases = {
        "DO $$ BEGIN DROP TABLE accounts; END $$": "no-drop-table",
        "DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'accounts'; END $$": "no-dynamic-sql",
        "WITH d AS (DELETE FROM accounts RETURNING *) SELECT count(*) FROM d": (
            "no-delete-without-where"
        ),
    }
    with _connect(shipped_proxy) as conn:
        for sql, rule in cases.items():
            assert f"rule {rule}" in _denied_rule(conn, sql, prepare)
        # the same shapes, harmless, pass
        conn.execute("DO $$ BEGIN PERFORM count(*) FROM accounts; END $$", prepare=prepare)
        cur = conn.execute(
            "WITH d AS (DELETE FROM orders WHERE id = 7 RETURNING *) SELECT count(*) FROM d",
            prepare=prepare,
        )
        assert cur.fetchone() == (1,)
    after = snapshot(fixture_db)
    assert after.rows["public.accounts"] == before.rows["public.accounts"]
    assert after.catalog == before.catalog


def test_standard_conforming_strings_off(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    trick = "SELECT 'a\\' , $$'; DROP TABLE accounts; --$$"
    with _connect(shipped_proxy) as conn:
        conn.execute("SET standard_conforming_strings = off")
        for prepare in (False, True):
            assert "on_unparseable" in _denied_rule(conn, trick, prepare)
        # ordinary statements still work in that session
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (62,)
        conn.execute("INSERT INTO orders VALUES (7041, 1, 1)")
        conn.execute("UPDATE accounts SET balance = balance WHERE id = 1", prepare=True)
        assert conn.execute("SELECT 'plain text'").fetchone() == ("plain text",)
        # back on: the same text is one harmless SELECT of two string literals
        conn.execute("SET standard_conforming_strings = on")
        assert conn.execute(trick).fetchone() == ("a\\", "'; DROP TABLE accounts; --")
    assert _order_ids(fixture_db, 7041) == [7041]
    _tables_intact(fixture_db)


# ------------------------------------------------------------------ FunctionCall


def test_function_call_is_denied_by_the_shipped_policies(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    oid = int(direct_fetch(fixture_db, "SELECT 'int4pl'::regproc::oid")[0][0])
    with rawpg.RawConn(shipped_proxy.host, shipped_proxy.port) as conn:
        conn.login(database=FIXTURE_DB)
        conn.send(rawpg.function_call(oid, [b"\x00\x00\x00\x02", b"\x00\x00\x00\x28"]))
        msgs = conn.read_until([b"Z"])
        assert _kinds(msgs) == "EZ"
        assert msgs[0].sqlstate == "42501"
        assert msgs[-1].payload == b"I"
        # inside a transaction block, the server's transaction is aborted as well
        conn.send(rawpg.query("BEGIN; INSERT INTO orders VALUES (7051, 1, 1)"))
        assert conn.read_until([b"Z"])[-1].payload == b"T"
        conn.send(rawpg.function_call(oid, [b"\x00\x00\x00\x02", b"\x00\x00\x00\x28"]))
        msgs = conn.read_until([b"Z"])
        assert (msgs[0].sqlstate, msgs[-1].payload) == ("42501", b"E")
        conn.send(rawpg.query("COMMIT"))
        done = conn.read_until([b"Z"])
        assert [m.payload for m in done if m.kind == b"C"] == [b"ROLLBACK\x00"]
        assert done[-1].payload == b"I"
    assert _order_ids(fixture_db, 7051) == []


def test_psql_lo_import_goes_through_and_lo_unlink_is_denied(
    shipped_proxy: ProxyProcess, fixture_db: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Both use FunctionCall: the shipped policy allows the large-object calls that read and
    write (allow-large-object-io), not lo_unlink (oid 964), which deletes one."""
    blob = tmp_path_factory.mktemp("lo") / "blob.bin"
    blob.write_bytes(b"x" * 1000)
    args = ["-X", "-h", shipped_proxy.host, "-p", str(shipped_proxy.port), "-U", "postgres"]
    args += ["-d", FIXTURE_DB]
    run_client(fixture_db, "psql", [*args, "-c", f"\\lo_import {blob}"])
    (oid,) = direct_fetch(fixture_db, "SELECT oid FROM pg_largeobject_metadata")[0]
    try:
        assert direct_fetch(fixture_db, "SELECT length(lo_get(%s))", [oid]) == [(1000,)]
        proc = run_client(fixture_db, "psql", [*args, "-c", f"\\lo_unlink {oid}"], check=False)
        assert proc.returncode != 0
        assert "pgsentry: statement denied by rule function_call" in proc.stderr.decode()
        assert "function call oid 964" in proc.stderr.decode()
        assert direct_fetch(fixture_db, "SELECT count(*) FROM pg_largeobject_metadata") == [(1,)]
    finally:
        direct_fetch(fixture_db, "SELECT lo_unlink(%s)", [oid])


def test_a_session_truncates_and_drops_its_own_temporary_tables_through_pg_temp(
    shipped_proxy: ProxyProcess,
) -> None:
    with _connect(shipped_proxy) as conn:
        conn.execute("CREATE TEMP TABLE scratch (id int)")
        conn.execute("INSERT INTO scratch SELECT generate_series(1, 10)")
        with pytest.raises(Denied):  # pg_temp.scratch could be a view over a real table
            conn.execute("DELETE FROM pg_temp.scratch")
        conn.execute("TRUNCATE pg_temp.scratch")
        with pytest.raises(Denied):
            conn.execute("DROP TABLE scratch")  # unqualified: could be any table
        conn.execute("DROP TABLE pg_temp.scratch")
        assert conn.execute("SELECT to_regclass('pg_temp.scratch')").fetchone() == (None,)
