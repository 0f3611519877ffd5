"""End to end: a held DROP TABLE and each way its hold can end, seen by real clients.

Approved (psycopg; then psql approved with `pgsentry holds approve`), denied, timed out,
cancelled (psycopg cancel and asyncpg timeout) and abandoned (client disconnect). Each
test checks the client's answer, the table on the cluster directly, the hold's state over
HTTP, its audit events and the /metrics counters. Must not reach into pgsentry's process.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
from pathlib import Path

import asyncpg
import psycopg
import pytest
from integration.helpers import Background, client_env

from pgsentry.devtools import PgCluster
from pgsentry.devtools.proxyproc import free_port
from pgsentry.devtools.testkit import ProxyFactory
from pgsentry.wire import errors as E

from .e2e_support import (
    HeldClient,
    Stage,
    api,
    api_async,
    hold_id_from,
    holds_waiting,
    make_table,
    outcome_count,
    pgsentry_cli,
    start_stage,
    table_exists,
)


def test_approved_drop_runs_and_the_client_sees_a_normal_result(stage: Stage) -> None:
    pg = stage.pg
    make_table(pg, "victim_approved")
    before = stage.metrics()
    with HeldClient(stage.dsn(application_name="e2e-approve")) as client:
        job = client.start("DROP TABLE victim_approved")
        hold_id = client.wait_hold_id()

        notice = client.notice_for(hold_id)
        assert notice.severity == "NOTICE"
        assert "rule hold-drop-public" in notice.message_primary
        assert "waiting up to 120s" in notice.message_primary
        assert notice.message_detail == "table drops need a second pair of eyes"
        assert f"pgsentry holds approve {hold_id}" in notice.message_hint

        delivery = stage.receiver.wait_for_hold(hold_id)
        assert delivery.payload["type"] == "hold.created"
        data = delivery.payload["data"]
        assert data["statement"] == "DROP TABLE victim_approved"
        assert (data["user"], data["database"]) == ("postgres", "postgres")
        assert data["application_name"] == "e2e-approve"
        assert data["client_addr"] == "127.0.0.1"
        assert data["rule"] == "hold-drop-public"
        assert data["state"] == "waiting" and data["expires_at"]
        assert data["approve_url"] == stage.hold_url(hold_id, "approve")
        assert data["deny_url"] == stage.hold_url(hold_id, "deny")

        # Held: nothing ran, the client is still waiting, the gauge counts it.
        assert table_exists(pg, "victim_approved")
        assert holds_waiting(stage.metrics()) == 1
        answer = api("POST", data["approve_url"], stage.tokens["bob"], {"reason": "release 42"})
        assert answer.status == 200, answer.body
        assert answer.body["state"] == "approved"
        assert answer.body["decided_by"] == ["bob"]

        assert job.result() == "DROP TABLE"
        assert client.conn.execute("select 41 + 1").fetchone() == (42,)
    assert not table_exists(pg, "victim_approved")

    events = stage.wait_audit(
        hold_id, ["hold_held", "hold_notified", "hold_approval", "hold_released", "hold_executed"]
    )
    assert events.index("hold_held") < events.index("hold_released")
    assert events.index("hold_released") < events.index("hold_executed")
    records = {r["event"]: r for r in stage.audit_for(hold_id)}
    assert records["hold_approval"]["approver"] == "bob"
    assert records["hold_approval"]["reason"] == "release 42"
    assert records["hold_executed"]["outcome"] == "ok"
    assert records["hold_executed"]["command_tag"] == "DROP TABLE"
    assert records["hold_notified"]["status"] == 204
    after = stage.metrics()
    assert outcome_count(after, "approved") == outcome_count(before, "approved") + 1
    assert holds_waiting(after) == 0
    # Issue 4: the notification carries the statement's "kind and facts". Last, so that a
    # failure here does not hide the checks above.
    assert data["analysis"]["kinds"] == ["drop_table"], data["analysis"]


def test_denied_drop_gets_42501_naming_approver_and_reason(stage: Stage) -> None:
    pg = stage.pg
    make_table(pg, "victim_denied")
    before = stage.metrics()
    with HeldClient(stage.dsn()) as client:
        job = client.start("DROP TABLE victim_denied")
        hold_id = client.wait_hold_id()
        answer = stage.deny(hold_id, "carol", "not during business hours")
        assert answer.status == 200 and answer.body["state"] == "denied"
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            job.result()
        diag = info.value.diag
        assert diag.sqlstate == "42501"
        assert "carol" in (diag.message_primary or "")
        assert "not during business hours" in (diag.message_primary or "")
        assert client.conn.execute("select 1").fetchone() == (1,)  # session still usable
    assert table_exists(pg, "victim_denied")
    stage.wait_audit(hold_id, ["hold_held", "hold_denial"])
    denial = next(r for r in stage.audit_for(hold_id) if r["event"] == "hold_denial")
    assert denial["approvers"] == ["carol"]
    assert denial["reason"] == "not during business hours"
    assert "hold_executed" not in [r["event"] for r in stage.audit_for(hold_id)]
    assert outcome_count(stage.metrics(), "denied") == outcome_count(before, "denied") + 1


def test_timed_out_hold_gets_the_documented_sqlstate(stage: Stage) -> None:
    pg = stage.pg
    make_table(pg, "quick_victim")
    before = stage.metrics()
    with HeldClient(stage.dsn()) as client:
        job = client.start("DROP TABLE quick_victim")
        hold_id = client.wait_hold_id()
        assert "waiting up to 3s" in client.notice_for(hold_id).message_primary
        error = job.error()  # nobody decides; the rule's 3 s timeout ends it
        assert isinstance(error, psycopg.Error)
        assert error.diag.sqlstate == E.HOLD_TIMEOUT
        assert "not approved in time" in (error.diag.message_primary or "")
        assert "hold-drop-quick" in (error.diag.message_primary or "")
        assert client.conn.execute("select 1").fetchone() == (1,)
    assert table_exists(pg, "quick_victim")
    assert stage.show(hold_id).body["state"] == "expired"
    late = stage.approve(hold_id)
    assert late.status == 409 and late.body["hold"]["state"] == "expired"
    stage.wait_audit(hold_id, ["hold_held", "hold_expired"])
    assert "hold_executed" not in [r["event"] for r in stage.audit_for(hold_id)]
    assert outcome_count(stage.metrics(), "expired") == outcome_count(before, "expired") + 1


def test_psycopg_cancel_ends_the_hold_with_57014(stage: Stage) -> None:
    pg = stage.pg
    make_table(pg, "victim_cancel")
    before = stage.metrics()
    with HeldClient(stage.dsn()) as client:
        job = client.start("DROP TABLE victim_cancel")
        hold_id = client.wait_hold_id()
        canceller = threading.Thread(target=client.conn.cancel_safe)
        canceller.start()
        canceller.join(30)
        with pytest.raises(psycopg.errors.QueryCanceled) as info:
            job.result()
        assert info.value.diag.sqlstate == "57014"
        assert client.conn.execute("select 1").fetchone() == (1,)
    assert table_exists(pg, "victim_cancel")
    assert stage.show(hold_id).body["state"] == "cancelled"
    late = stage.approve(hold_id)
    assert late.status == 409 and late.body["hold"]["state"] == "cancelled"
    stage.wait_audit(hold_id, ["hold_held", "hold_cancelled"])
    assert "hold_executed" not in [r["event"] for r in stage.audit_for(hold_id)]
    assert outcome_count(stage.metrics(), "cancelled") == outcome_count(before, "cancelled") + 1


@pytest.mark.parametrize("protocol", ["simple", "extended"])
async def test_asyncpg_timeout_cancels_the_hold(stage: Stage, protocol: str) -> None:
    pg = stage.pg
    table = f"victim_asyncpg_{protocol}"
    make_table(pg, table)
    notices: list[str] = []
    conn = await asyncpg.connect(stage.dsn())
    try:
        conn.add_log_listener(lambda _c, msg: notices.append(str(msg)))
        # asyncpg sends a CancelRequest when its timeout passes, then raises TimeoutError.
        # execute() without arguments is a simple Query; fetch() prepares (Parse ... Sync).
        with pytest.raises(TimeoutError):
            if protocol == "simple":
                await conn.execute(f"DROP TABLE {table}", timeout=2)
            else:
                await conn.fetch(f"DROP TABLE {table}", timeout=2)
        assert await conn.fetchval("select $1::int", 7) == 7
    finally:
        await conn.close()
    hold_id = hold_id_from(" ".join(notices))
    assert table_exists(pg, table)
    answer = await api_async("GET", stage.hold_url(hold_id), stage.tokens["bob"])
    assert answer.body["state"] == "cancelled"


async def test_disconnect_abandons_the_hold_and_a_late_approval_conflicts(
    stage: Stage,
) -> None:
    pg = stage.pg
    make_table(pg, "victim_abandon")
    before = stage.metrics()
    notices: list[str] = []
    conn = await asyncpg.connect(stage.dsn())
    conn.add_log_listener(lambda _c, msg: notices.append(str(msg)))
    task = asyncio.ensure_future(conn.execute("DROP TABLE victim_abandon"))
    while not notices:
        await asyncio.sleep(0.05)
    hold_id = hold_id_from(notices[0])
    conn.terminate()  # the client goes away while its statement is held
    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
        await task
    stage.wait_state(hold_id, "abandoned")
    late = await api_async(
        "POST", stage.hold_url(hold_id, "approve"), stage.tokens["bob"], {"reason": "late"}
    )
    assert late.status == 409, late.body
    assert late.body["hold"]["state"] == "abandoned"
    assert table_exists(pg, "victim_abandon")
    stage.wait_audit(hold_id, ["hold_held", "hold_abandoned"])
    assert "hold_executed" not in [r["event"] for r in stage.audit_for(hold_id)]
    assert outcome_count(stage.metrics(), "abandoned") == outcome_count(before, "abandoned") + 1


def _psql(stage: Stage, sql: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(stage.pg.bindir / "psql"),
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            stage.proxy.host,
            "-p",
            str(stage.proxy.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ],
        env=client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_psql_ctrl_c_cancels_the_hold(stage: Stage) -> None:
    pg = stage.pg
    make_table(pg, "victim_psql_int")
    proc = _psql(stage, "DROP TABLE victim_psql_int")
    try:
        assert proc.stderr is not None
        first_line = Background(proc.stderr.readline).result(30)
        hold_id = hold_id_from(first_line)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does: psql sends a CancelRequest
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "canceling statement due to user request" in err
    assert table_exists(pg, "victim_psql_int")
    assert stage.show(hold_id).body["state"] == "cancelled"


def test_psql_shows_the_notice_and_the_cli_approves(stage: Stage) -> None:
    pg = stage.pg
    make_table(pg, "victim_psql")
    proc = _psql(stage, "DROP TABLE victim_psql")
    try:
        assert proc.stderr is not None and proc.stdout is not None
        first_line = Background(proc.stderr.readline).result(30)  # printed while waiting
        assert first_line.startswith("NOTICE:"), first_line
        hold_id = hold_id_from(first_line)
        assert proc.poll() is None  # psql is still waiting for its result
        assert table_exists(pg, "victim_psql")

        cli = pgsentry_cli(
            "holds",
            "approve",
            hold_id,
            "--reason",
            "planned cleanup",
            "--url",
            stage.admin_url,
            "--token",
            stage.tokens["carol"],
        )
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert "hold is now approved" in cli.stdout
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "DROP TABLE"
    assert not table_exists(pg, "victim_psql")
    shown = pgsentry_cli(
        "holds", "show", hold_id, "--url", stage.admin_url, "--token", stage.tokens["bob"]
    )
    assert shown.returncode == 0 and "approved" in shown.stdout
    assert "carol: planned cleanup" in shown.stdout


def test_a_dead_webhook_receiver_never_blocks_or_loses_the_hold(
    pg: PgCluster,
    proxy_factory: ProxyFactory,
    approvers: tuple[Path, dict[str, str]],
    tmp_path: Path,
) -> None:
    path, tokens = approvers
    dead = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens there
    stage = start_stage(pg, proxy_factory, tmp_path / "dead", tokens, path, webhook_url=dead)
    try:
        make_table(pg, "victim_dead_hook")
        with HeldClient(stage.dsn()) as client:
            job = client.start("DROP TABLE victim_dead_hook")
            hold_id = client.wait_hold_id()
            failed = stage.wait_audit(hold_id, ["hold_notify_failed"])
            assert "hold_notified" not in failed
            record = next(r for r in stage.audit_for(hold_id) if r["event"] == "hold_notify_failed")
            assert record["webhook"] == dead.removesuffix("/hooks")  # never the full URL
            assert record["final"] is False and record["status"] is None
            assert stage.approve(hold_id).status == 200
            assert job.result() == "DROP TABLE"
        assert not table_exists(pg, "victim_dead_hook")
        retries = ("pgsentry_webhook_deliveries_total", (("result", "retry"),))
        assert stage.metrics()[retries] >= 1
    finally:
        stage.receiver.stop()
