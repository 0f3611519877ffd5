"""`python -m pgsentry.demo` (what `make demo` runs): pgsentry in front of a throwaway database.

Owns: the demo's lifecycle. It starts a temporary PostgreSQL cluster (pgsentry.devtools.PgCluster),
loads a small schema (accounts, orders), starts the real `pgsentry run` as a subprocess with the
shipped policies/, prints the psql command to connect through the proxy and a few statements to
try, waits for Ctrl-C (SIGINT) or SIGTERM, then stops pgsentry and the cluster and deletes its
temporary directory.
Must not: import the proxy in-process, touch anything outside its temporary directory, or leave a
process or file behind on a normal stop.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from pgsentry.devtools.pgcluster import (
    SCRAM_PASSWORD,
    SCRAM_USER,
    PgBinariesMissing,
    PgCluster,
    PgClusterError,
    free_tcp_port,
    port_is_free,
)
from pgsentry.devtools.proxyproc import readyz

HOST = "127.0.0.1"
DEFAULT_PORT = 6432
DEFAULT_ADMIN_PORT = 9187
DATABASE = "demo"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

SCHEMA_SQL = """
CREATE TABLE accounts (
    id      integer PRIMARY KEY,
    owner   text    NOT NULL,
    email   text    NOT NULL UNIQUE,
    balance numeric(12, 2) NOT NULL DEFAULT 0
);
CREATE TABLE orders (
    id         serial  PRIMARY KEY,
    account_id integer NOT NULL REFERENCES accounts (id),
    item       text    NOT NULL,
    amount     numeric(12, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO accounts VALUES
    (1, 'Ada Lovelace',   'ada@example.com',   1200.00),
    (2, 'Alan Turing',    'alan@example.com',   310.50),
    (3, 'Grace Hopper',   'grace@example.com',  9000.00),
    (4, 'Edsger Dijkstra','edsger@example.com',   42.00);
INSERT INTO orders (account_id, item, amount) VALUES
    (1, 'analytical engine gears', 250.00),
    (1, 'punched cards',            12.50),
    (2, 'bombe rotor',             180.00),
    (3, 'COBOL manual',             35.00),
    (3, 'nanosecond wire',           0.25),
    (4, 'semaphore',                 7.00);
"""

TRY_SQL = (
    ("works", "SELECT owner, balance FROM accounts ORDER BY id;"),
    ("works", "UPDATE accounts SET balance = balance + 1 WHERE id = 2;"),
    ("refused", "DROP TABLE accounts;"),
    ("refused", "DELETE FROM accounts;"),
    ("refused", "TRUNCATE orders;"),
)


def pick_port(preferred: int) -> int:
    return preferred if preferred and port_is_free(preferred, HOST) else free_tcp_port(HOST)


def default_policies() -> Path:
    """policies/ of the source tree (make demo runs from a checkout), else ./policies."""
    in_tree = Path(__file__).resolve().parent.parent / "policies"
    return in_tree if in_tree.is_dir() else Path.cwd() / "policies"


class Demo:
    def __init__(self, policies: Path, port: int, admin_port: int) -> None:
        self.policies = policies.resolve()
        self.port = port
        self.admin_port = admin_port
        self.stop_requested = threading.Event()
        self.tmp: Path | None = None
        self.cluster: PgCluster | None = None
        self.proxy: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.start()
            if self.stop_requested.is_set():
                return 0
            self.print_instructions()
            return self.wait()
        finally:
            self.cleanup()

    def start(self) -> None:
        # The cluster may run as the unprivileged `postgres` user: the directory must be
        # traversable by it (mode 0711); the audit log inside is still created 0600.
        self.tmp = Path(tempfile.mkdtemp(prefix="pgsentry-demo-"))
        self.tmp.chmod(0o711)
        say(f"Starting a throwaway PostgreSQL cluster in {self.tmp} ...")
        self.cluster = PgCluster(self.tmp / "pg").start()
        self.cluster.psql(f"CREATE DATABASE {DATABASE} OWNER {SCRAM_USER}")
        self.cluster.psql(SCHEMA_SQL, dbname=DATABASE, user=SCRAM_USER)
        if self.stop_requested.is_set():
            return
        self.port = pick_port(self.port)
        self.admin_port = pick_port(self.admin_port)
        argv = [
            sys.executable,
            "-m",
            "pgsentry",
            "run",
            "--listen",
            f"{HOST}:{self.port}",
            "--upstream",
            f"postgresql://{HOST}:{self.cluster.port}/",
            "--policies",
            str(self.policies),
            "--audit-log",
            str(self.audit_log),
            "--admin-listen",
            f"{HOST}:{self.admin_port}",
        ]
        say(f"Starting pgsentry: {' '.join(argv[1:])}")
        # Its own session, so a terminal's Ctrl-C reaches only the demo, which then stops
        # pgsentry gracefully with SIGTERM.
        self.proxy = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready()

    @property
    def audit_log(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "audit.jsonl"

    def wait_ready(self) -> None:
        assert self.proxy is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.stop_requested.is_set():
            if self.proxy.poll() is not None:
                raise DemoError(f"pgsentry exited with code {self.proxy.returncode} at start")
            if self.ready():
                return
            if time.monotonic() > deadline:
                raise DemoError(f"pgsentry was not ready within {READY_TIMEOUT:.0f}s")
            time.sleep(0.1)

    def ready(self) -> bool:
        return bool(readyz(HOST, self.admin_port))

    def wait(self) -> int:
        assert self.proxy is not None
        while not self.stop_requested.wait(0.5):
            if self.proxy.poll() is not None:
                say(f"pgsentry exited unexpectedly with code {self.proxy.returncode}")
                return 1
        say("\nStopping ...")
        return 0

    def cleanup(self) -> None:
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.send_signal(signal.SIGTERM)
            try:
                self.proxy.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                self.proxy.wait()
        if self.cluster is not None:
            try:
                self.cluster.stop()
            except PgClusterError as exc:
                say(f"stopping PostgreSQL: {exc}")
            stop_orphan_postmaster(self.cluster.datadir)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            say(f"Removed {self.tmp}. Bye.")

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested.set()

    # -- output ------------------------------------------------------------------------------

    def print_instructions(self) -> None:
        dsn = f"postgresql://{SCRAM_USER}:{SCRAM_PASSWORD}@{HOST}:{self.port}/{DATABASE}"
        lines = [
            "",
            "pgsentry is running in front of a throwaway PostgreSQL database.",
            "",
            "Connect through the proxy (SCRAM-SHA-256 login, relayed untouched):",
            "",
            f'    psql "{dsn}"',
            "",
            "Things to try (tables: accounts, orders):",
        ]
        lines += [f"    {sql:<58} -- {outcome}" for outcome, sql in TRY_SQL]
        lines += [
            "",
            f"Audit log (JSON Lines):  tail -f {self.audit_log}",
            f"Metrics and health:      http://{HOST}:{self.admin_port}/metrics  /healthz  /readyz",
            f"Policies in force:       {self.policies}",
            f"Explain a decision:      pgsentry explain --policies {self.policies} "
            '"DROP TABLE accounts"',
            "",
            "Press Ctrl-C to stop; everything the demo started is stopped and deleted.",
            "",
        ]
        say("\n".join(lines))


def stop_orphan_postmaster(datadir: Path, timeout: float = STOP_TIMEOUT) -> None:
    """A Ctrl-C that hit pg_ctl mid-start can leave a server PgCluster does not know it
    started: stop it through its postmaster.pid (SIGINT = fast shutdown) before deleting."""
    pid_file = datadir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class DemoError(RuntimeError):
    """The demo could not start; the message says why."""


def say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pgsentry.demo", description=__doc__)
    parser.add_argument("--policies", type=Path, default=default_policies())
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="proxy port if free")
    parser.add_argument("--admin-port", type=int, default=DEFAULT_ADMIN_PORT)
    args = parser.parse_args(argv)
    if not args.policies.exists():
        parser.error(f"--policies: {args.policies} does not exist")
    demo = Demo(args.policies, args.port, args.admin_port)
    signal.signal(signal.SIGINT, demo.request_stop)
    signal.signal(signal.SIGTERM, demo.request_stop)
    try:
        return demo.run()
    except PgBinariesMissing as exc:
        print(f"pgsentry demo: {exc}", file=sys.stderr)
        return 2
    except (DemoError, PgClusterError) as exc:
        print(f"pgsentry demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
