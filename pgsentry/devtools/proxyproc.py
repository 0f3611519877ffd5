"""Run the real `pgsentry run` as a subprocess, for tests and the benchmark.

Owns: building the command line, free ports, waiting for readiness (`GET /readyz` on the admin
port answers 200; while no admin server listens, a TCP connect to the proxy port counts),
capturing stdout/stderr to files, signalling and stopping.

Must not: import the proxy in-process or reach into its internals; everything goes through the
documented CLI, signals, sockets and the audit log file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

from pgsentry.devtools.pgcluster import free_tcp_port

free_port = free_tcp_port


def readyz(host: str, admin_port: int) -> bool | None:
    """GET /readyz of a pgsentry admin listener: True (200), False (another status), or
    None when nothing answers HTTP there."""
    try:
        with urllib.request.urlopen(f"http://{host}:{admin_port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return False
    except OSError:
        return None


class ProxyStartError(RuntimeError):
    """The proxy exited or never became ready; the message carries its stderr."""


def wait_until(
    pred: Callable[[], object], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `pred` until it returns a truthy value (returned); TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s: {what or pred!r}")
        time.sleep(interval)


def _tcp_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class ProxyProcess:
    """One `python -m pgsentry run` subprocess listening on 127.0.0.1."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        upstream: str,
        workdir: Path,
        policies: Path | None = None,
        port: int | None = None,
        admin_port: int | None = None,
        audit_log: Path | None = None,
        tls: tuple[Path, Path] | None = None,
        upstream_sslmode: str | None = None,
        upstream_ca: Path | None = None,
        shutdown_grace: float | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.upstream = upstream
        self.policies = policies
        self.port = port or free_tcp_port()
        self.admin_port = admin_port or free_tcp_port()
        self.audit_log = audit_log or self.workdir / "audit.jsonl"
        self.tls = tls
        self.stdout_path = self.workdir / "proxy.stdout"
        self.stderr_path = self.workdir / "proxy.stderr"
        self.python = python or sys.executable
        args = [
            "--listen",
            f"{self.host}:{self.port}",
            "--upstream",
            upstream,
            "--audit-log",
            str(self.audit_log),
            "--admin-listen",
            f"{self.host}:{self.admin_port}",
        ]
        if policies is not None:
            args += ["--policies", str(policies)]
        if tls is not None:
            args += ["--tls-cert-file", str(tls[0]), "--tls-key-file", str(tls[1])]
        if upstream_sslmode is not None:
            args += ["--upstream-sslmode", upstream_sslmode]
        if upstream_ca is not None:
            args += ["--upstream-ssl-ca-file", str(upstream_ca)]
        if shutdown_grace is not None:
            args += ["--shutdown-grace-seconds", str(shutdown_grace)]
        self.argv = [self.python, "-m", "pgsentry", "run", *args, *extra_args]
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("PGSENTRY_")}
        base_env["PYTHONUNBUFFERED"] = "1"
        base_env.update(env or {})
        self.env = base_env
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 30.0, *, require_ready: bool = True) -> ProxyProcess:
        """Spawn and wait until ready; ProxyStartError if it exits or is not ready in time.

        require_ready=False waits only for the proxy port to accept TCP connections (for an
        unreachable upstream, where /readyz may rightly say 503).
        """
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=err, env=self.env, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while not (self._ready() if require_ready else _tcp_accepts(self.host, self.port)):
            if self.proc.poll() is not None:
                raise ProxyStartError(
                    f"pgsentry exited with {self.proc.returncode} before ready: {self.stderr}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise ProxyStartError(f"pgsentry not ready within {timeout}s: {self.stderr}")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        answer = readyz(self.host, self.admin_port)
        if answer is not None:
            return answer
        # No admin server (yet): fall back to the proxy port accepting connections.
        return not _tcp_accepts(self.host, self.admin_port) and _tcp_accepts(self.host, self.port)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "proxy not started"
        return self.proc.pid

    @property
    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig: int) -> None:
        assert self.proc is not None, "proxy not started"
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for exit; subprocess.TimeoutExpired if still running."""
        assert self.proc is not None, "proxy not started"
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- clients and observations -------------------------------------------------------------

    def dsn(
        self,
        user: str = "postgres",
        password: str | None = None,
        dbname: str = "postgres",
        sslmode: str = "disable",
        **params: str,
    ) -> str:
        """A postgresql:// URL pointing at the proxy; extra keywords become query parameters."""
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        query = urlencode({"sslmode": sslmode, **params})
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname)}?{query}"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def log_contains(self, text: str) -> bool:
        return text in self.stderr or text in self.stdout

    def audit_records(self) -> list[dict[str, Any]]:
        """The audit log parsed as JSON Lines (an incomplete last line is ignored)."""
        if not self.audit_log.exists():
            return []
        records: list[dict[str, Any]] = []
        for line in self.audit_log.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    wait_until = staticmethod(wait_until)
