"""The measured workloads: pgbench runs, bulk COPY in both directions, idle connections.

Owns running one workload once against one target and returning its metrics, with the
middle process's CPU time / memory read from /proc around the run. Must not decide the
order of runs or format results (see runner and report).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pgsentry.bench.middles import Target
from pgsentry.bench.procfs import cpu_seconds, rss_kb

Metrics = dict[str, float | None]


class WorkloadError(RuntimeError):
    """One run failed; the message is what the client printed."""


def client_env() -> dict[str, str]:
    """The environment for psql / pgbench: no stray PG* settings from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"LC_ALL": "C", "LANG": "C"})
    return env


def conn_args(target: Target) -> list[str]:
    return ["-h", target.host, "-p", str(target.port), "-U", "postgres"]


def _first_lines(text: str, n: int = 2) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[:n])


def _last_lines(text: str, n: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])


@dataclass(frozen=True)
class PgbenchSpec:
    """One pgbench configuration; `duration` seconds, or `transactions` per client if set."""

    select_only: bool
    protocol: str  # "simple" or "prepared"
    clients: int
    threads: int
    duration: int
    transactions: int | None = None

    @property
    def label(self) -> str:
        mix = "select-only (-S)" if self.select_only else "TPC-B-like"
        plural = "" if self.clients == 1 else "s"
        return f"{mix}, -M {self.protocol}, {self.clients} client{plural}"

    def argv(self, bindir: Path, target: Target) -> list[str]:
        args = [str(bindir / "pgbench"), *conn_args(target), "-n", "-M", self.protocol]
        if self.select_only:
            args.append("-S")
        args += ["-c", str(self.clients), "-j", str(self.threads)]
        if self.transactions is not None:
            args += ["-t", str(self.transactions)]
        else:
            args += ["-T", str(self.duration)]
        return [*args, "postgres"]


_TX_RE = re.compile(r"number of transactions actually processed: (\d+)")
_LAT_RE = re.compile(r"latency average = ([\d.]+) ms")
_TPS_RE = re.compile(r"tps = ([\d.]+) \(without initial connection time\)")


def run_pgbench(spec: PgbenchSpec, bindir: Path, target: Target) -> Metrics:
    """tps, latency_ms, and the middle's cpu_us_per_tx (None for direct)."""
    pid = target.pid
    cpu0 = cpu_seconds(pid) if pid is not None else 0.0
    proc = subprocess.run(
        spec.argv(bindir, target),
        capture_output=True,
        text=True,
        env=client_env(),
        timeout=spec.duration * 4 + 120,
        check=False,
    )
    cpu1 = cpu_seconds(pid) if pid is not None else 0.0
    out = proc.stdout
    tx, lat, tps = _TX_RE.search(out), _LAT_RE.search(out), _TPS_RE.search(out)
    if proc.returncode != 0 or tx is None or lat is None or tps is None:
        why = _first_lines(proc.stderr) or _last_lines(out)
        raise WorkloadError(f"pgbench exit {proc.returncode}: {why}")
    n = int(tx.group(1))
    if n == 0:
        raise WorkloadError("pgbench processed no transactions")
    return {
        "tps": float(tps.group(1)),
        "latency_ms": float(lat.group(1)),
        "cpu_us_per_tx": (cpu1 - cpu0) / n * 1e6 if pid is not None else None,
    }


def psql_argv(bindir: Path, target: Target, sql: str) -> list[str]:
    return [
        str(bindir / "psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        *conn_args(target),
        "-d",
        "postgres",
        "-c",
        sql,
    ]


def run_copy(bindir: Path, target: Target, *, to_stdout: bool, data: Path, nbytes: int) -> Metrics:
    """One COPY of `nbytes` of text through psql: TO STDOUT into /dev/null, or FROM STDIN
    out of `data`. Returns mb_s (10^6 bytes per second of wall time, connection included)
    and the middle's cpu_s_per_gb."""
    sql = "COPY bench_copy_src TO STDOUT" if to_stdout else "COPY bench_copy_dst FROM STDIN"
    pid = target.pid
    cpu0 = cpu_seconds(pid) if pid is not None else 0.0
    t0 = time.perf_counter()
    with (
        open(os.devnull, "wb") if to_stdout else data.open("rb") as stream,
    ):
        proc = subprocess.run(
            psql_argv(bindir, target, sql),
            stdin=subprocess.DEVNULL if to_stdout else stream,
            stdout=stream if to_stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=client_env(),
            timeout=3600,
            check=False,
        )
    elapsed = time.perf_counter() - t0
    cpu1 = cpu_seconds(pid) if pid is not None else 0.0
    if proc.returncode != 0:
        raise WorkloadError(f"psql exit {proc.returncode}: {_last_lines(proc.stderr.decode())}")
    return {
        "mb_s": nbytes / elapsed / 1e6,
        "cpu_s_per_gb": (cpu1 - cpu0) / (nbytes / 1e9) if pid is not None else None,
    }


async def _open_idle(target: Target, count: int, parallel: int = 32) -> list[object]:
    import psycopg  # a test extra; imported here so the rest of the bench does not need it

    conninfo = f"host={target.host} port={target.port} user=postgres dbname=postgres"
    conns: list[psycopg.AsyncConnection[object]] = []
    gate = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with gate:
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
            conns.append(conn)
            await conn.execute("SELECT 1")

    try:
        await asyncio.gather(*(one() for _ in range(count)))
    except BaseException:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        raise
    return list(conns)


async def _idle(target: Target, count: int, settle: float) -> Metrics:
    import psycopg

    pid = target.pid
    if pid is None:
        raise WorkloadError("no middle process")
    # Warm up: one full connection cycle, so lazily initialised state is not counted.
    for c in await _open_idle(target, 1):
        assert isinstance(c, psycopg.AsyncConnection)
        await c.close()
    await asyncio.sleep(settle)
    before = rss_kb(pid)
    conns = await _open_idle(target, count)
    try:
        await asyncio.sleep(settle)
        after = rss_kb(pid)
    finally:
        await asyncio.gather(
            *(c.close() for c in conns if isinstance(c, psycopg.AsyncConnection)),
            return_exceptions=True,
        )
    return {
        "rss_before_kb": float(before),
        "rss_after_kb": float(after),
        "kb_per_conn": (after - before) / count,
    }


def run_idle(target: Target, count: int, settle: float = 1.0) -> Metrics:
    """Open `count` client connections (each runs SELECT 1 once, then stays idle) and
    report the middle's resident memory growth per connection."""
    return asyncio.run(_idle(target, count, settle))
