"""Small helpers for the integration tests: client programs, background work, server views.

Owns: running psql/pg_dump/pg_restore with a clean environment, a thread wrapper that
re-raises in the test, and looking at pg_stat_activity directly on the cluster (not through
the proxy). Must not talk to the proxy except as an ordinary client would.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from pgsentry.devtools import PgCluster, ProxyProcess
from pgsentry.devtools.proxyproc import wait_until

T = TypeVar("T")


def client_env(password: str | None = None, **pgvars: str) -> dict[str, str]:
    """os.environ without PG* variables, plus PGPASSWORD and the given PG* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "15"
    if password is not None:
        env["PGPASSWORD"] = password
    env.update(pgvars)
    return env


def run_client(
    pg: PgCluster,
    program: str,
    args: Sequence[str],
    *,
    password: str | None = None,
    timeout: float = 120,
    check: bool = True,
    input_bytes: bytes | None = None,
    **pgvars: str,
) -> subprocess.CompletedProcess[bytes]:
    """Run a client program from the server's bindir (psql, pg_dump, pg_restore)."""
    proc = subprocess.run(
        [str(pg.bindir / program), *args],
        env=client_env(password, **pgvars),
        capture_output=True,
        timeout=timeout,
        input=input_bytes,
        check=False,
    )
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        raise AssertionError(f"{program} {list(args)} exited {proc.returncode}: {err}")
    return proc


def proxy_conninfo(
    proxy: ProxyProcess, user: str = "postgres", dbname: str = "postgres", **kw: str
) -> str:
    parts = {"host": proxy.host, "port": str(proxy.port), "user": user, "dbname": dbname, **kw}
    return " ".join(f"{k}={v}" for k, v in parts.items())


def active_backend_pid(pg: PgCluster, query_fragment: str, timeout: float = 10) -> int:
    """Wait until a backend runs a query containing `query_fragment`; return its server pid."""
    sql = (
        "select pid from pg_stat_activity where state = 'active' and pid <> pg_backend_pid() "
        f"and query like '%{query_fragment}%' and query not like '%pg_stat_activity%'"
    )

    def probe() -> int:
        out = pg.psql(sql).strip()
        return int(out.splitlines()[0]) if out else 0

    pid: int = wait_until(probe, timeout=timeout, what=f"query {query_fragment!r} active")
    return pid


class Background(Generic[T]):
    """Run fn in a daemon thread; result() joins and re-raises whatever it raised."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._result: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], T]) -> None:
        try:
            self._result = fn()
        except BaseException as exc:
            self._error = exc

    def result(self, timeout: float = 60) -> T:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"background call still running after {timeout}s")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def error(self, timeout: float = 60) -> BaseException | None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"background call still running after {timeout}s")
        return self._error


def fetch_all(dsn: str, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()
