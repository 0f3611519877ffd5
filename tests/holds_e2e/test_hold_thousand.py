"""End to end: 1,000 statements held at once, each on its own client connection, then all
approved over HTTP, while an unrelated session keeps running queries through the proxy.

Owns its own PostgreSQL cluster (max_connections raised to 1100: every held client keeps
its upstream backend) and its own pgsentry. No timing thresholds: the unrelated session
must complete queries while all the holds are waiting, and every one must succeed.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from pgsentry.devtools import PgBinariesMissing, PgCluster
from pgsentry.devtools.testkit import ProxyFactory

from .e2e_support import HOLD_ID_RE, Stage, holds_waiting, outcome_count, start_stage

HELD = 1000
CONNECT_CONCURRENCY = 50
APPROVE_CONCURRENCY = 50


@pytest.fixture(scope="module")
def big_pg() -> Iterator[PgCluster]:
    workdir = Path(tempfile.mkdtemp(prefix="pgsentry-pg-many-"))
    workdir.chmod(0o755)
    try:
        cluster = PgCluster(workdir / "cluster", extra_conf={"max_connections": "1100"})
    except PgBinariesMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def big_stage(
    big_pg: PgCluster,
    approvers: tuple[Path, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stage]:
    factory = ProxyFactory(big_pg, tmp_path_factory.mktemp("many"))
    path, tokens = approvers
    st = start_stage(big_pg, factory, tmp_path_factory.mktemp("many-stage"), tokens, path)
    try:
        yield st
    finally:
        for report in factory.stop_all():
            print(report)
        st.receiver.stop()


class Unrelated:
    """A session that runs `SELECT $1 * 2` in a loop and records every answer."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.answers: list[bool] = []
        self.errors: list[BaseException] = []
        self.stop = False

    async def run(self) -> None:
        i = 0
        while not self.stop:
            i += 1
            try:
                value = await self.conn.fetchval("select $1::int * 2", i)
            except Exception as exc:  # recorded and asserted on: every query must succeed
                self.errors.append(exc)
                continue
            self.answers.append(value == 2 * i)

    async def at_least(self, count: int) -> None:
        while len(self.answers) + len(self.errors) < count:
            await asyncio.sleep(0.01)


async def test_thousand_holds_at_once_all_approved_while_others_run(big_stage: Stage) -> None:
    stage, pg = big_stage, big_stage.pg
    pg.psql(
        f"DO $$ BEGIN FOR i IN 1..{HELD} LOOP "
        "EXECUTE format('CREATE TABLE public.mass_%s (id int)', i); END LOOP; END $$"
    )
    dsn = stage.dsn()
    bob = stage.tokens["bob"]
    headers = {"Authorization": f"Bearer {bob}"}

    other = Unrelated(await asyncpg.connect(dsn))
    other_task = asyncio.ensure_future(other.run())
    await other.at_least(10)

    hold_ids: dict[int, str] = {}
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(i: int) -> asyncpg.Connection:
        async with gate:
            conn = await asyncpg.connect(dsn, timeout=60)

        def on_notice(_c: object, msg: object, i: int = i) -> None:
            m = HOLD_ID_RE.search(str(msg))
            if m:
                hold_ids[i] = m.group(1)

        conn.add_log_listener(on_notice)
        return conn

    t0 = time.monotonic()
    clients = await asyncio.gather(*(connect(i) for i in range(1, HELD + 1)))
    t_connected = time.monotonic()
    drops = [
        asyncio.ensure_future(c.execute(f"DROP TABLE mass_{i}"))
        for i, c in enumerate(clients, start=1)
    ]
    try:
        while len(hold_ids) < HELD:
            assert not any(d.done() for d in drops), [d for d in drops if d.done()][:3]
            await asyncio.sleep(0.05)
        t_held = time.monotonic()
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(f"{stage.admin_url}/v1/holds") as resp:
                listed = (await resp.json())["holds"]
            assert len(listed) == HELD
            assert {h["id"] for h in listed} == set(hold_ids.values())
            assert holds_waiting(await asyncio.to_thread(stage.metrics)) == HELD
            count = pg.psql("select count(*) from pg_tables where tablename like 'mass\\_%'")
            assert count.strip() == str(HELD)  # nothing ran

            # The unrelated session keeps answering while all 1,000 wait.
            during_start = len(other.answers) + len(other.errors)
            await other.at_least(during_start + 200)
            assert not any(d.done() for d in drops)

            approve_gate = asyncio.Semaphore(APPROVE_CONCURRENCY)

            async def approve(hold_id: str) -> int:
                async with approve_gate:
                    url = f"{stage.admin_url}/v1/holds/{hold_id}/approve"
                    async with http.post(url, json={"reason": "bulk"}) as resp:
                        await resp.read()
                        return resp.status

            statuses = await asyncio.gather(*(approve(h) for h in hold_ids.values()))
        assert statuses == [200] * HELD
        tags = await asyncio.gather(*drops)
        t_done = time.monotonic()
        assert tags == ["DROP TABLE"] * HELD
        during_end = len(other.answers) + len(other.errors)
    finally:
        other.stop = True
        await other_task
        for d in drops:
            d.cancel()
        await asyncio.gather(*(c.close(timeout=30) for c in clients), return_exceptions=True)
        await other.conn.close()

    assert other.errors == []
    assert all(other.answers)
    assert during_end - during_start >= 200
    count = pg.psql("select count(*) from pg_tables where tablename like 'mass\\_%'")
    assert count.strip() == "0"
    samples = await asyncio.to_thread(stage.metrics)
    assert holds_waiting(samples) == 0
    assert outcome_count(samples, "approved") == HELD
    print(
        f"\n{HELD} clients connected in {t_connected - t0:.1f}s, all held after "
        f"{t_held - t_connected:.1f}s, approved and run in {t_done - t_held:.1f}s; "
        f"unrelated session: {len(other.answers)} queries, {during_end - during_start} "
        "while holds were waiting or being approved"
    )

    def delivered() -> bool:
        ids = {d.payload["data"]["id"] for d in stage.receiver.accepted()}
        return ids >= set(hold_ids.values())

    deadline = time.monotonic() + 60
    while not delivered() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert delivered(), "every hold must be notified"
    assert stage.receiver.refused() == []
