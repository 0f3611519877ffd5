"""A throwaway local PostgreSQL cluster for tests, the demo and the benchmark.

Owns: finding the server binaries, initdb into a work directory, starting/stopping the server on
127.0.0.1 and a unix socket inside that directory, and the fixed test roles:

* ``postgres``   superuser, ``trust``
* ``scram_user`` password ``scram_pass``, stored and checked as SCRAM-SHA-256
* ``md5_user``   password ``md5_pass``,   stored and checked as MD5
* any other role: ``trust`` (so tests may create roles freely)

When run as root the server programs run as an unprivileged OS user (``postgres`` if it
exists, else ``nobody``), because initdb refuses root.

Must not: import any pgsentry runtime layer, touch anything outside its work directory, or
keep the server running after the interpreter exits (an atexit hook stops it).
"""

from __future__ import annotations

import atexit
import os
import pwd
import random
import re
import shutil
import socket
import stat
import subprocess
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install them with "
    "`apt-get install postgresql` (Debian/Ubuntu) or set PG_BINDIR to their directory"
)

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")

SCRAM_USER, SCRAM_PASSWORD = "scram_user", "scram_pass"
MD5_USER, MD5_PASSWORD = "md5_user", "md5_pass"


class PgClusterError(RuntimeError):
    """A server program failed; the message carries its output and the server log tail."""


class PgBinariesMissing(PgClusterError):
    """The PostgreSQL server binaries are not installed; str() is the one-line install hint."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


def _has_server_programs(bindir: Path) -> bool:
    return all(os.access(bindir / prog, os.X_OK) for prog in SERVER_PROGRAMS)


def _version_key(path: Path) -> tuple[int, ...]:
    digits = re.findall(r"\d+", path.parent.name)
    return tuple(int(d) for d in digits)


def find_bindir() -> Path:
    """PG_BINDIR, else `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    env = os.environ.get("PG_BINDIR")
    if env:
        if _has_server_programs(Path(env)):
            return Path(env)
        raise PgBinariesMissing()
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and _has_server_programs(Path(out)):
            return Path(out)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key)
    for cand in reversed(candidates):
        if _has_server_programs(cand):
            return cand
    raise PgBinariesMissing()


_handed_out: set[int] = set()  # ports free_tcp_port gave this process


def _ephemeral_range() -> tuple[int, int]:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(x) for x in text.split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a listener could bind `port` on `host` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago, never the same one twice in a process.

    Taken outside the kernel's ephemeral range: the kernel gives ports in that range to
    outgoing connections (the tests' own clients and the proxy's upstream connections), and
    one of them could take a port between this call and the bind that uses it (a suite run
    failed so: "address already in use" on an admin port).
    """
    low, high = _ephemeral_range()
    spans = [(lo, hi) for lo, hi in ((10000, low - 1), (high + 1, 65535)) if lo <= hi]
    for _ in range(200) if spans else ():
        lo, hi = random.choice(spans)
        port = random.randint(lo, hi)
        if port not in _handed_out and port_is_free(port, host):
            _handed_out.add(port)
            return port
    port = 0
    for _ in range(100):  # no free port outside the range: the kernel picks one
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            break
    _handed_out.add(port)
    return port


def server_os_user() -> pwd.struct_passwd | None:
    """The OS user to run programs that refuse root (PostgreSQL, pgbouncer) as: None when
    not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PgClusterError("running as root but neither OS user 'postgres' nor 'nobody' exists")


def _check_traversable(path: Path, user: pwd.struct_passwd) -> None:
    """Every parent of `path` must let `user` through, or the server cannot reach its data."""
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == user.pw_gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            raise PgClusterError(
                f"OS user {user.pw_name!r} cannot enter {parent} (needed for the cluster in "
                f"{path}); use a work directory under a world-traversable path such as /tmp"
            )


def _stop_at_exit(ref: weakref.ReferenceType[PgCluster]) -> None:
    cluster = ref()
    if cluster is not None and cluster._started:
        cluster.stop()


class PgCluster:
    """One PostgreSQL cluster in `workdir` (data/, sock/, postgres.log are created there)."""

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        ssl_cert: tuple[Path, Path] | None = None,
        extra_conf: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.bindir = find_bindir()
        self._fixed_port = port
        self.port = port or 0
        self.ssl_cert = ssl_cert
        self.extra_conf: dict[str, str] = dict(extra_conf or {})
        self.datadir = self.workdir / "data"
        self.socket_dir = self.workdir / "sock"
        self.log_path = self.workdir / "postgres.log"
        self._os_user = server_os_user()
        self._started = False
        atexit.register(_stop_at_exit, weakref.ref(self))

    # -- running the server programs -------------------------------------------------------

    def _run(
        self, args: Sequence[str], *, timeout: float = 60, as_server_user: bool = True
    ) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if as_server_user and self._os_user is not None:
            kwargs = {
                "user": self._os_user.pw_uid,
                "group": self._os_user.pw_gid,
                "extra_groups": [],
            }
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update({"LC_ALL": "C", "LANG": "C", "TZ": "UTC"})
        try:
            proc = subprocess.run(
                list(args),
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=self.workdir,
                check=False,
                **kwargs,
            )
        except subprocess.TimeoutExpired as exc:
            raise PgClusterError(f"{args[0]} timed out after {timeout}s{self._log_tail()}") from exc
        if proc.returncode != 0:
            raise PgClusterError(
                f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr.strip()} "
                f"{proc.stdout.strip()}{self._log_tail()}"
            )
        return proc

    def _bin(self, prog: str) -> str:
        return str(self.bindir / prog)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n--- server log tail ---\n" + "\n".join(text.splitlines()[-lines:])

    # -- setup ---------------------------------------------------------------------------------

    def _prepare_workdir(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self._os_user is not None:
            _check_traversable(self.workdir, self._os_user)
            for path in (self.workdir, self.socket_dir):
                os.chown(path, self._os_user.pw_uid, self._os_user.pw_gid)
        self.workdir.chmod(0o755)
        self.socket_dir.chmod(0o755)

    def _initdb(self) -> bool:
        """Create the data directory unless it exists; True when it was created now."""
        if (self.datadir / "PG_VERSION").exists():
            return False
        self._run(
            [
                self._bin("initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            timeout=120,
        )
        self._write_hba()
        return True

    def _write_hba(self) -> None:
        lines = ["# written by pgsentry.devtools.pgcluster", "local all all trust"]
        for kind in ("hostssl", "host"):
            lines += [
                f"{kind} all postgres 127.0.0.1/32 trust",
                f"{kind} all {SCRAM_USER} 127.0.0.1/32 scram-sha-256",
                f"{kind} all {MD5_USER} 127.0.0.1/32 md5",
                f"{kind} all all 127.0.0.1/32 trust",
                f"{kind} replication postgres 127.0.0.1/32 trust",  # pg_basebackup & co
            ]
        self._write_server_file(self.datadir / "pg_hba.conf", "\n".join(lines) + "\n")

    def _write_server_file(self, path: Path, text: str, mode: int = 0o600) -> None:
        path.write_text(text)
        path.chmod(mode)
        if self._os_user is not None:
            os.chown(path, self._os_user.pw_uid, self._os_user.pw_gid)

    def _write_conf(self) -> None:
        conf: dict[str, str] = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
            "shared_buffers": "64MB",
            "max_wal_size": "1GB",
            "password_encryption": "'scram-sha-256'",
            "log_min_messages": "warning",
            "log_connections": "off",
            "timezone": "'UTC'",
        }
        if self.ssl_cert is not None:
            cert, key = self.ssl_cert
            cert_copy, key_copy = self.workdir / "server.crt", self.workdir / "server.key"
            self._write_server_file(cert_copy, Path(cert).read_text(), 0o644)
            self._write_server_file(key_copy, Path(key).read_text(), 0o600)
            conf.update(ssl="on", ssl_cert_file=f"'{cert_copy}'", ssl_key_file=f"'{key_copy}'")
        conf.update(self.extra_conf)
        text = "".join(f"{k} = {v}\n" for k, v in conf.items())
        self._write_server_file(self.datadir / "postgresql.auto.conf", text)

    def _create_roles(self) -> None:
        self.psql(
            f"""
            SET password_encryption = 'scram-sha-256';
            CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}';
            SET password_encryption = 'md5';
            CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}';
            GRANT ALL ON SCHEMA public TO {SCRAM_USER}, {MD5_USER};
            """
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> PgCluster:
        """initdb when needed, then start the server; returns self. Idempotent."""
        if self._started:
            return self
        self._prepare_workdir()
        created = self._initdb()
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            if not self._fixed_port:
                self.port = free_tcp_port()
            self._write_conf()
            try:
                self._pg_ctl("start", "-l", str(self.log_path), "-t", "60")
                break
            except PgClusterError:
                if attempt == attempts - 1:
                    raise
        self._started = True
        if created:
            self._create_roles()
        return self

    def _pg_ctl(self, *args: str) -> None:
        self._run([self._bin("pg_ctl"), "-D", str(self.datadir), "-w", *args], timeout=90)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (mode: smart, fast or immediate)."""
        if not self._started:
            return
        self._pg_ctl("stop", "-m", mode, "-t", "60")
        self._started = False

    def restart(self, mode: str = "fast") -> None:
        """Restart on the same port; sessions in flight are terminated by the server."""
        self._pg_ctl("restart", "-m", mode, "-l", str(self.log_path), "-t", "60")
        self._started = True

    @property
    def is_running(self) -> bool:
        try:
            self._run([self._bin("pg_ctl"), "-D", str(self.datadir), "status"], timeout=30)
        except PgClusterError:
            return False
        return True

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- clients -------------------------------------------------------------------------------

    def dsn(
        self,
        user: str = "postgres",
        password: str | None = None,
        dbname: str = "postgres",
        host: str | None = None,
        port: int | None = None,
        **params: str,
    ) -> str:
        """A postgresql:// URL; extra keyword arguments become query parameters (sslmode=...)."""
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        url = f"postgresql://{auth}@{host or self.host}:{port or self.port}/{quote(dbname)}"
        if params:
            url += "?" + urlencode(params)
        return url

    def psql(self, sql: str, dbname: str = "postgres", user: str = "postgres") -> str:
        """Run SQL as `user` over the unix socket with ON_ERROR_STOP; unaligned tuples-only."""
        proc = self._run(
            [
                self._bin("psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                user,
                "-d",
                dbname,
                "-c",
                sql,
            ],
            as_server_user=False,
        )
        return proc.stdout

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
