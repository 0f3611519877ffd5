"""Process and upstream lifecycle: upstream restart, upstream down, one backend dying,
SIGTERM graceful shutdown, SIGHUP survival, and bad configuration exiting 2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import psycopg
import pytest

from pgsentry.devtools import PgCluster, ProxyProcess, free_port
from pgsentry.devtools.testkit import Certs, ProxyFactory

from .helpers import Background, active_backend_pid
from .rawpg import RawConn, startup_message

pytestmark = pytest.mark.timeout(90)


def test_upstream_restart_ends_sessions_cleanly_and_new_ones_work(
    pg: PgCluster, proxy: ProxyProcess
) -> None:
    idle = psycopg.connect(proxy.dsn(), autocommit=True)
    busy = psycopg.connect(proxy.dsn(), autocommit=True)
    try:
        assert idle.execute("select 1").fetchone() == (1,)
        job = Background(lambda: busy.execute("select pg_sleep(30) as restart_me").fetchall())
        active_backend_pid(pg, "restart_me")
        pg.restart()
        err = job.error(timeout=30)
        assert isinstance(err, psycopg.OperationalError), repr(err)
        with pytest.raises(psycopg.OperationalError):
            idle.execute("select 1")
    finally:
        idle.close()
        busy.close()
    assert proxy.is_alive
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute("select 'after restart'").fetchone() == ("after restart",)


def test_one_backend_dying_leaves_other_sessions_alone(pg: PgCluster, proxy: ProxyProcess) -> None:
    with (
        psycopg.connect(proxy.dsn(), autocommit=True) as doomed,
        psycopg.connect(proxy.dsn(), autocommit=True) as survivor,
    ):
        job = Background(lambda: doomed.execute("select pg_sleep(30) as kill_me").fetchall())
        pid = active_backend_pid(pg, "kill_me")
        pg.psql(f"select pg_terminate_backend({pid})")
        err = job.error(timeout=20)
        assert isinstance(err, psycopg.OperationalError), repr(err)
        assert survivor.execute("select 'alive'").fetchone() == ("alive",)
    assert proxy.is_alive


def test_upstream_down_gives_prompt_error(proxy_factory: ProxyFactory) -> None:
    proxy = proxy_factory(upstream=f"postgresql://127.0.0.1:{free_port()}", require_ready=False)
    with RawConn(proxy.host, proxy.port, timeout=20) as conn:
        conn.send(startup_message())
        msgs = conn.read_to_close()
    errors = [m for m in msgs if m.kind == b"E"]
    assert len(errors) == 1, msgs
    assert errors[0].fields["S"] == "FATAL"
    assert errors[0].sqlstate.startswith("08"), errors[0].fields
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(proxy.dsn(), connect_timeout=20)
    assert "timeout" not in str(err.value).lower()
    assert proxy.is_alive


def test_upstream_that_never_answers_gives_prompt_error(proxy_factory: ProxyFactory) -> None:
    """A listener that accepts TCP connections and never says a word (a hung server)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        port = silent.getsockname()[1]
        proxy = proxy_factory(
            upstream=f"postgresql://127.0.0.1:{port}",
            upstream_sslmode="disable",
            extra_args=["--connect-timeout-seconds", "1"],
            require_ready=False,
        )
        with RawConn(proxy.host, proxy.port, timeout=20) as conn:
            conn.send(startup_message())
            msgs = conn.read_to_close()
        errors = [m for m in msgs if m.kind == b"E"]
        assert len(errors) == 1, msgs
        assert errors[0].sqlstate == "08006", errors[0].fields
        assert "did not answer" in errors[0].fields["M"]
        assert proxy.is_alive
    finally:
        silent.close()


async def test_upstream_down_asyncpg_sees_sqlstate(proxy_factory: ProxyFactory) -> None:
    proxy = proxy_factory(upstream=f"postgresql://127.0.0.1:{free_port()}", require_ready=False)
    with pytest.raises(asyncpg.PostgresError) as err:
        await asyncpg.connect(proxy.dsn(), timeout=20)
    assert str(err.value.sqlstate).startswith("08")


def test_sigterm_lets_in_flight_statement_finish(
    pg: PgCluster, proxy_factory: ProxyFactory
) -> None:
    proxy = proxy_factory(shutdown_grace=15)
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        job = Background(lambda: conn.execute("select 42 from pg_sleep(1) as graceful").fetchall())
        active_backend_pid(pg, "graceful")
        proxy.signal(signal.SIGTERM)
        assert job.result(timeout=30) == [(42,)]
    assert proxy.wait(timeout=30) == 0
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(proxy.dsn(), connect_timeout=5)


def test_sighup_does_not_kill_the_proxy(proxy: ProxyProcess) -> None:
    proxy.signal(signal.SIGHUP)
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert proxy.is_alive


BAD_CONFIGS = [
    pytest.param(["--listen", "not-a-hostport"], {}, "listen", id="bad-listen"),
    pytest.param(["--listen", "127.0.0.1:99999"], {}, "listen", id="listen-port-range"),
    pytest.param(
        ["--upstream", "mysql://127.0.0.1:5432"], {}, "upstream", id="bad-upstream-scheme"
    ),
    pytest.param(["--upstream", "::::"], {}, "upstream", id="bad-upstream-url"),
    pytest.param([], {"PGSENTRY_LISTEN": "nonsense"}, "listen", id="bad-listen-env"),
    pytest.param(["--tls-key-file", "/nonexistent/key.pem"], {}, "key", id="missing-tls-key"),
    pytest.param(
        [],
        {"PGSENTRY_WEBHOOK_URLS": "http://x/"},
        "--webhook-url (pgsentry_webhook_urls): must be a json list",
        id="webhook-urls-env-not-json",
    ),
    pytest.param(
        ["--webhook-url", "ftp://x", "--webhook-format", "slack"],
        {},
        "--webhook-url (pgsentry_webhook_urls)",
        id="webhook-url-names-the-real-flag",
    ),
    pytest.param(
        ["--connect-timeout-seconds", "inf"], {}, "connect-timeout", id="connect-timeout-inf"
    ),
    pytest.param(
        [], {"PGSENTRY_SHUTDOWN_GRACE_SECONDS": "1e400"}, "shutdown-grace", id="grace-overflow"
    ),
    pytest.param(["--policy-watch-seconds", "0.001"], {}, "policy-watch", id="watch-too-often"),
    pytest.param(["--public-url", "not a url"], {}, "public-url", id="public-url"),
    pytest.param(["--policies", ""], {}, "--policies", id="policies-empty-flag"),
    pytest.param([], {"PGSENTRY_POLICIES": ""}, "policies", id="policies-empty-env"),
    pytest.param([], {"PGSENTRY_TLS_REQUIRE": "maybe"}, "tls-require", id="bool-env"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("args", "env", "setting"), BAD_CONFIGS)
def test_bad_configuration_exits_2_with_one_line(
    pg: PgCluster, certs: Certs, tmp_path: Path, args: list[str], env: dict[str, str], setting: str
) -> None:
    base = {
        "--listen": f"127.0.0.1:{free_port()}",
        "--upstream": f"postgresql://{pg.host}:{pg.port}",
        "--policies": str(Path(__file__).parent.parent / "policies" / "allow_all.yaml"),
        "--audit-log": str(tmp_path / "audit.jsonl"),
        "--admin-listen": f"127.0.0.1:{free_port()}",
    }
    if "--tls-key-file" in args:
        base["--tls-cert-file"] = str(certs.cert)
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    if env:
        for key in env:
            base.pop("--" + key.removeprefix("PGSENTRY_").lower().replace("_", "-"), None)
    argv = [sys.executable, "-m", "pgsentry", "run"]
    for flag, value in base.items():
        argv += [flag, value]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PGSENTRY_")}
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env={**full_env, **env}, check=False
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert setting in lines[0].lower(), lines[0]
