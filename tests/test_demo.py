"""`python -m pgsentry.demo` end to end: start, connect through the printed psql URL, Ctrl-C,
and check that every process and file the demo started is gone."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgsentry.devtools import free_port

PSQL_LINE = re.compile(r'psql "(postgresql://[^"]+)"')
TMP_LINE = re.compile(r"PostgreSQL cluster in (\S+) \.\.\.")
START_TIMEOUT = 180.0


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain `text` (e.g. the demo's temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


class DemoRun:
    def __init__(self, proc: subprocess.Popen[str], busy_port: int) -> None:
        self.proc = proc
        self.busy_port = busy_port
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str]) -> re.Match[str]:
        while True:
            try:
                line = self.lines.get(timeout=START_TIMEOUT)
            except queue.Empty:
                pytest.fail(f"demo printed no {pattern.pattern!r}: {''.join(self.output)}")
            if line is None:
                pytest.fail(f"demo exited before {pattern.pattern!r}: {''.join(self.output)}")
            self.output.append(line)
            match = pattern.search(line)
            if match:
                return match


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoRun]:
    # Occupy the port we ask for, so the demo must fall back to a free one.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    busy_port = busy.getsockname()[1]
    stderr = (tmp_path / "demo.stderr").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pgsentry.demo",
            "--port",
            str(busy_port),
            "--admin-port",
            str(free_port()),
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PGSENTRY_")},
    )
    run = DemoRun(proc, busy_port)
    try:
        yield run
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        busy.close()
        stderr.close()


def test_demo_end_to_end(demo: DemoRun, tmp_path: Path) -> None:
    tmp_dir = Path(demo.wait_for(TMP_LINE).group(1))
    dsn = demo.wait_for(PSQL_LINE).group(1)
    assert f":{demo.busy_port}/" not in dsn
    assert tmp_dir.is_dir()
    assert processes_mentioning(str(tmp_dir))  # pgsentry and postgres run from there

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT owner FROM accounts ORDER BY id").fetchall()
        assert [r[0] for r in rows] == [
            "Ada Lovelace",
            "Alan Turing",
            "Grace Hopper",
            "Edsger Dijkstra",
        ]
        for refused in ("DROP TABLE accounts", "DELETE FROM accounts"):
            with pytest.raises(psycopg.Error, match="pgsentry"):
                conn.execute(refused)
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (4,)

    audit_log = tmp_dir / "audit.jsonl"

    def decisions() -> dict[str, str]:
        # The audit writer thread batches writes (every few ms): poll for the records.
        records = [json.loads(line) for line in audit_log.read_text().splitlines()]
        return {r["text"]: r["decision"] for r in records if r["event"] == "statement"}

    deadline = time.monotonic() + 10
    while "DROP TABLE accounts" not in decisions() and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = decisions()
    assert seen["DROP TABLE accounts"] == "deny"
    assert seen["SELECT owner FROM accounts ORDER BY id"] == "allow"

    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(60) == 0
    assert not tmp_dir.exists()
    assert processes_mentioning(str(tmp_dir)) == []
    stderr = (tmp_path / "demo.stderr").read_text()
    assert "Traceback" not in stderr
