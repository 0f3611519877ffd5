"""The processes placed between the client and PostgreSQL: pgsentry and pgbouncer.

Owns generating pgbouncer's configuration, starting both middles (pgbouncer as an
unprivileged OS user when we are root, because it refuses to run as root), waiting until
they accept connections, and stopping them. Must not measure anything.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pgsentry.devtools.pgcluster import PgClusterError, free_tcp_port, server_os_user
from pgsentry.devtools.proxyproc import ProxyProcess, ProxyStartError

HOST = "127.0.0.1"


class MiddleError(RuntimeError):
    """A middle process could not be started; the message carries its log tail."""


class Middle(Protocol):
    name: str
    port: int

    @property
    def pid(self) -> int: ...

    @property
    def alive(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def log_tail(self) -> str: ...


@dataclass
class Target:
    """One way to reach the cluster: `direct`, `pgsentry` or `pgbouncer`."""

    name: str
    direct_port: int
    middle: Middle | None = None
    unavailable: str | None = None  # why this target is not measured

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self.middle.port if self.middle is not None else self.direct_port

    @property
    def pid(self) -> int | None:
        return self.middle.pid if self.middle is not None else None


class PgSentry:
    """`python -m pgsentry run` with the given policies and the audit log to a file
    (through devtools.ProxyProcess, the same handle the integration tests use)."""

    name = "pgsentry"

    def __init__(self, workdir: Path, upstream_port: int, policies: Path) -> None:
        self.workdir = workdir
        self.upstream_port = upstream_port
        self.policies = policies
        self.port = 0
        self._proc: ProxyProcess | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise MiddleError("pgsentry is not running")
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive

    def log_tail(self) -> str:
        """The last lines of the proxy's stderr (why it stopped, when it did)."""
        if self._proc is None:
            return ""
        return " | ".join(self._proc.stderr.strip().splitlines()[-3:])

    def start(self) -> None:
        if self._proc is not None:
            return
        proc = ProxyProcess(
            upstream=f"postgresql://{HOST}:{self.upstream_port}",
            workdir=self.workdir,
            policies=self.policies,
            audit_log=self.workdir / "audit.jsonl",
        )
        try:
            proc.start()
        except ProxyStartError as exc:
            proc.stop()
            raise MiddleError(str(exc)[-1500:]) from exc
        self._proc, self.port = proc, proc.port

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stop()


def unprivileged_user() -> pwd.struct_passwd | None:
    """The OS user for programs that refuse root (the one PgCluster runs PostgreSQL as)."""
    try:
        return server_os_user()
    except PgClusterError as exc:
        raise MiddleError(str(exc)) from exc


def pgbouncer_binary() -> str | None:
    found = shutil.which("pgbouncer")
    if found:
        return found
    for path in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"):
        if os.access(path, os.X_OK):
            return path
    return None


def pgbouncer_version() -> str | None:
    binary = pgbouncer_binary()
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0].strip() if out.stdout else None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class PgBouncer:
    """pgbouncer in session mode from a generated ini, trust auth, one pool slot per client."""

    name = "pgbouncer"

    def __init__(self, workdir: Path, upstream_port: int, max_clients: int) -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise MiddleError("pgbouncer is not installed")
        self.binary = binary
        self.workdir = workdir
        self.upstream_port = upstream_port
        self.max_clients = max_clients
        self.user = unprivileged_user()
        self.port = 0
        self.log = workdir / "pgbouncer.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise MiddleError("pgbouncer is not running")
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self) -> str:
        return " | ".join(_tail(self.log, 3).splitlines())

    def _write_config(self) -> Path:
        d = self.workdir
        d.mkdir(parents=True, exist_ok=True)
        users = d / "userlist.txt"
        users.write_text('"postgres" ""\n')
        ini = d / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={HOST} port={self.upstream_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = {HOST}\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {d}\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "pool_mode = session\n"
            f"max_client_conn = {self.max_clients}\n"
            f"default_pool_size = {self.max_clients}\n"
            "max_db_connections = 0\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n"
        )
        if self.user is not None:
            for path in (d, users, ini):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        return ini

    def start(self) -> None:
        if self._proc is not None:
            return
        self.port = free_tcp_port()
        ini = self._write_config()
        as_user: dict[str, object] = {}
        if self.user is not None:
            as_user = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(  # type: ignore[call-overload]
                [self.binary, str(ini)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                **as_user,
            )
        deadline = time.monotonic() + 30
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise MiddleError(f"pgbouncer exited with {code}: {_tail(self.log)}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise MiddleError(f"pgbouncer not accepting: {_tail(self.log)}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
