"""End to end: holds inside transaction blocks, multi-statement Query messages and
extended-protocol batches (psycopg pipeline, asyncpg prepared statements).

Checks what really reached the database by looking at the cluster directly, never through
the proxy. Must not reach into pgsentry's process.
"""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import pytest
from integration.helpers import Background

from .e2e_support import HeldClient, Stage, api_async, hold_id_from, make_table, rows, table_exists


def test_transaction_block_stays_open_and_commits_after_approval(stage: Stage) -> None:
    pg = stage.pg
    make_table(pg, "victim_tx_ok")
    make_table(pg, "tx_log_ok")
    with HeldClient(stage.dsn()) as client:
        conn = client.conn
        conn.execute("BEGIN")
        conn.execute("INSERT INTO tx_log_ok VALUES (1)")
        job = client.start("DROP TABLE victim_tx_ok")
        hold_id = client.wait_hold_id()
        shown = stage.show(hold_id).body
        assert shown["in_transaction"] is True
        assert rows(pg, "tx_log_ok") == []  # not committed yet
        assert stage.approve(hold_id).status == 200
        assert job.result() == "DROP TABLE"
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert conn.execute("COMMIT").statusmessage == "COMMIT"
    assert rows(pg, "tx_log_ok") == ["1"]
    assert not table_exists(pg, "victim_tx_ok")


def test_denial_inside_a_transaction_aborts_it(stage: Stage) -> None:
    pg = stage.pg
    make_table(pg, "victim_tx_no")
    make_table(pg, "tx_log_no")
    with HeldClient(stage.dsn()) as client:
        conn = client.conn
        conn.execute("BEGIN")
        conn.execute("INSERT INTO tx_log_no VALUES (2)")
        job = client.start("DROP TABLE victim_tx_no")
        hold_id = client.wait_hold_id()
        assert stage.deny(hold_id, "bob", "wrong table").status == 200
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            job.result()
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        assert conn.execute("COMMIT").statusmessage == "ROLLBACK"
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert rows(pg, "tx_log_no") == []
    assert table_exists(pg, "victim_tx_no")


@pytest.mark.parametrize("action", ["approve", "deny"])
def test_multi_statement_query_runs_nothing_until_decided(stage: Stage, action: str) -> None:
    pg = stage.pg
    victim, log = f"victim_multi_{action}", f"multi_log_{action}"
    make_table(pg, victim)
    make_table(pg, log)
    with HeldClient(stage.dsn()) as client:
        # No parameters: psycopg sends one simple Query message with all three statements.
        job = client.start(
            f"INSERT INTO {log} VALUES (1); DROP TABLE {victim}; INSERT INTO {log} VALUES (2)"
        )
        hold_id = client.wait_hold_id()
        assert rows(pg, log) == []  # not even the first INSERT ran
        active = pg.psql(
            f"select count(*) from pg_stat_activity where query like '%{log} VALUES%' "
            "and query not like '%pg_stat_activity%'"
        )
        assert active.strip() == "0"  # the text never reached a backend
        if action == "approve":
            assert stage.approve(hold_id).status == 200
            assert job.result() == "INSERT 0 1"
        else:
            assert stage.deny(hold_id).status == 200
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                job.result()
    assert rows(pg, log) == (["1", "2"] if action == "approve" else [])
    assert table_exists(pg, victim) is (action == "deny")


@pytest.mark.parametrize("action", ["approve", "deny"])
def test_psycopg_pipeline_batch_is_held_whole(stage: Stage, action: str) -> None:
    pg = stage.pg
    victim, log = f"victim_pipe_{action}", f"pipe_log_{action}"
    make_table(pg, victim)
    make_table(pg, log)
    with HeldClient(stage.dsn()) as client:
        conn = client.conn

        def batch() -> str | None:
            with conn.pipeline():
                conn.execute(f"INSERT INTO {log} VALUES (%s)", [1])
                cur = conn.execute(f"DROP TABLE {victim}")
                conn.execute(f"INSERT INTO {log} VALUES (%s)", [2])
            return cur.statusmessage

        job = Background(batch)
        hold_id = client.wait_hold_id()
        assert rows(pg, log) == []
        assert table_exists(pg, victim)
        if action == "approve":
            assert stage.approve(hold_id).status == 200
            assert job.result() == "DROP TABLE"
        else:
            assert stage.deny(hold_id).status == 200
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                job.result()
        assert conn.execute("select 1").fetchone() == (1,)
    # The batch is one implicit transaction: a denial leaves none of it behind.
    assert rows(pg, log) == (["1", "2"] if action == "approve" else [])
    assert table_exists(pg, victim) is (action == "deny")


async def test_asyncpg_extended_protocol_hold_approved_and_denied(stage: Stage) -> None:
    pg = stage.pg
    make_table(pg, "victim_apg_ok")
    make_table(pg, "victim_apg_no")
    notices: list[str] = []
    conn = await asyncpg.connect(stage.dsn())
    conn.add_log_listener(lambda _c, msg: notices.append(str(msg)))
    try:
        for table, action in (("victim_apg_ok", "approve"), ("victim_apg_no", "deny")):
            notices.clear()
            # fetch() always prepares: Parse/Describe/Sync, then Bind/Execute/Sync.
            task = asyncio.ensure_future(conn.fetch(f"DROP TABLE {table}"))
            while not notices:
                await asyncio.sleep(0.05)
            hold_id = hold_id_from(notices[0])
            answer = await api_async(
                "POST", stage.hold_url(hold_id, action), stage.tokens["carol"], {"reason": "t"}
            )
            assert answer.status == 200, answer.body
            if action == "approve":
                assert await task == []
            else:
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                    await task
            assert await conn.fetchval("select $1::int + 1", 1) == 2
    finally:
        await conn.close()
    assert not table_exists(pg, "victim_apg_ok")
    assert table_exists(pg, "victim_apg_no")


def test_each_execution_of_a_prepared_statement_is_held_with_its_parameters(
    stage: Stage,
) -> None:
    """One approval runs one execution: a statement held at Parse is judged again at
    every Bind (psycopg's prepare=True sends Parse once, then Bind / Execute), and the
    approvers see the values it runs with."""
    pg = stage.pg
    pg.psql("DROP TABLE IF EXISTS held_rows; CREATE TABLE held_rows (id int)")
    pg.psql("INSERT INTO held_rows SELECT generate_series(1, 4)")
    with HeldClient(stage.dsn()) as client:
        conn = client.conn
        for key, action in ((1, "approve"), (2, "deny"), (3, "approve")):
            client.notices.clear()

            def run(key: int = key) -> str | None:
                sql = "DELETE FROM held_rows WHERE id = %s"
                return conn.execute(sql, [str(key)], prepare=True).statusmessage

            job = Background(run)
            hold_id = client.wait_hold_id()
            shown = stage.show(hold_id).body["statement"]
            assert "DELETE FROM held_rows WHERE id = $1" in shown
            assert f"$1 = '{key}'" in shown
            if action == "approve":
                assert stage.approve(hold_id).status == 200
                assert job.result() == "DELETE 1"
            else:
                assert stage.deny(hold_id).status == 200
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    job.result()
        assert conn.execute("select 1").fetchone() == (1,)
    survivors = pg.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM held_rows").strip()
    assert survivors == "2,4"


async def test_asyncpg_statement_cache_does_not_reuse_an_approval(stage: Stage) -> None:
    pg = stage.pg
    pg.psql("DROP TABLE IF EXISTS held_apg; CREATE TABLE held_apg (id int)")
    pg.psql("INSERT INTO held_apg SELECT generate_series(1, 3)")
    notices: list[str] = []
    conn = await asyncpg.connect(stage.dsn())
    conn.add_log_listener(lambda _c, msg: notices.append(str(msg)))
    try:
        for key in (1, 2):
            notices.clear()
            task = asyncio.ensure_future(conn.execute("DELETE FROM held_apg WHERE id = $1", key))
            while not notices:
                await asyncio.sleep(0.05)
            answer = await api_async(
                "POST",
                stage.hold_url(hold_id_from(notices[0]), "approve"),
                stage.tokens["carol"],
                {"reason": f"row {key}"},
            )
            assert answer.status == 200, answer.body
            assert await task == "DELETE 1"
    finally:
        await conn.close()
    assert pg.psql("SELECT string_agg(id::text, ',') FROM held_apg").strip() == "3"
