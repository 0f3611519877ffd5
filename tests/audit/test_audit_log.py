"""Audit log format, ordering, thread-safety, file/stdout sinks, rotation and close semantics."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pgsentry.audit import (
    AuditLog,
    AuditLogClosedError,
    MemoryAuditLog,
    MemorySink,
    events,
    format_ts,
    open_audit_log,
)

RFC3339_UTC_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


class Color(enum.Enum):
    RED = "red"


def test_record_starts_with_ts_and_event_and_keeps_fields() -> None:
    audit = MemoryAuditLog()
    before = dt.datetime.now(dt.UTC)
    audit.emit(
        events.CONNECTION_OPEN, session_id="s1", client_addr="10.0.0.1", client_port=5, tls=True
    )
    after = dt.datetime.now(dt.UTC)
    [record] = audit.records
    assert list(record)[:2] == ["ts", "event"]
    assert record == {
        "ts": record["ts"],
        "event": "connection_open",
        "session_id": "s1",
        "client_addr": "10.0.0.1",
        "client_port": 5,
        "tls": True,
    }
    assert RFC3339_UTC_MICROS.match(record["ts"])
    stamp = dt.datetime.fromisoformat(record["ts"].replace("Z", "+00:00"))
    assert before - dt.timedelta(milliseconds=1) <= stamp <= after + dt.timedelta(milliseconds=1)
    audit.close()


def test_emitters_cannot_override_reserved_keys() -> None:
    audit = MemoryAuditLog()
    audit.emit("statement", event="forged", ts="1970-01-01T00:00:00.000000Z", text="x")
    [record] = audit.records
    assert record["event"] == "statement"
    assert record["ts"] != "1970-01-01T00:00:00.000000Z"
    assert record["text"] == "x"
    audit.close()


def test_odd_values_are_written_not_dropped() -> None:
    class Circular:
        def __str__(self) -> str:
            return "circular-object"

    cyclic: list[object] = []
    cyclic.append(cyclic)
    audit = MemoryAuditLog()
    audit.emit(
        "statement",
        when=dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC),
        color=Color.RED,
        blob=b"\x00\xff",
        tags={"b", "a"},
        pair=(1, 2),
        other=Circular(),
        text="SELECT '\udcff'",  # a lone surrogate, as surrogateescape decoding produces
        unicode="żółw",
    )
    audit.emit("protocol_error", detail=cyclic)
    first, second = audit.records
    assert first["when"] == "2024-05-01T12:00:00+00:00"
    assert first["color"] == "red"
    assert first["blob"] == "AP8="
    assert first["tags"] == ["a", "b"]
    assert first["pair"] == [1, 2]
    assert first["other"] == "circular-object"
    assert first["text"] == "SELECT '\udcff'"
    assert first["unicode"] == "żółw"
    assert second["event"] == "protocol_error"
    assert "unserializable" in second
    audit.close()


def test_format_ts_matches_datetime() -> None:
    for ts in (0.0, 1.5, 1714564800.123456, 1714564800.9999996, 4102444799.000001):
        expected = dt.datetime.fromtimestamp(round(ts * 1e6) / 1e6, dt.UTC)
        assert format_ts(ts) == expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_writes_happen_on_the_writer_thread_only() -> None:
    threads: list[str] = []

    class RecordingSink(MemorySink):
        def write(self, data: bytes) -> None:
            threads.append(threading.current_thread().name)
            super().write(data)

    audit = AuditLog(RecordingSink(), batch_size=7)
    for i in range(100):
        audit.emit("statement", seq=i)
    audit.close()
    assert threads
    assert set(threads) == {"pgsentry-audit"}


def test_order_is_kept_and_threads_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = open_audit_log(str(path), batch_size=100)
    per_thread = 5_000

    def worker(n: int) -> None:
        for i in range(per_thread):
            audit.emit("statement", thread=n, seq=i, text="x" * (i % 50))

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in workers:
        t.start()
    for i in range(per_thread):
        audit.emit("statement", thread=-1, seq=i)
    for t in workers:
        t.join()
    audit.close()
    records = read_jsonl(path)
    assert len(records) == 9 * per_thread
    seen: dict[object, list[object]] = {}
    for record in records:
        seen.setdefault(record["thread"], []).append(record["seq"])
    assert set(seen) == {-1, *range(8)}
    for seqs in seen.values():
        assert seqs == list(range(per_thread))
    assert audit.records_written == 9 * per_thread


def test_file_is_created_0600_and_appended(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    old_umask = os.umask(0)
    try:
        audit = open_audit_log(str(path))
    finally:
        os.umask(old_umask)
    audit.emit("policy_reload", generation=1, result="ok", error=None)
    audit.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = open_audit_log(str(path))
    again.emit("policy_reload", generation=2, result="ok", error=None)
    again.close()
    assert [r["generation"] for r in read_jsonl(path)] == [1, 2]


def test_reopen_follows_rotation(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    rotated = tmp_path / "audit.jsonl.1"
    audit = open_audit_log(str(path))
    audit.emit("statement", seq=1)
    audit.flush()
    path.rename(rotated)
    audit.emit("statement", seq=2)  # still the old file: not reopened yet
    audit.flush()
    audit.reopen()
    audit.emit("statement", seq=3)
    audit.close()
    assert [r["seq"] for r in read_jsonl(rotated)] == [1, 2]
    assert [r["seq"] for r in read_jsonl(path)] == [3]
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_failing_sink_keeps_records_until_it_recovers(tmp_path: Path) -> None:
    """/dev/full refuses every write (ENOSPC); after the link points at a file, all arrive."""
    link = tmp_path / "audit.jsonl"
    target = tmp_path / "real.jsonl"
    link.symlink_to("/dev/full")
    audit = open_audit_log(str(link))
    for i in range(50):
        audit.emit("statement", seq=i)
    assert not audit.flush(timeout=0.3)
    assert audit.write_errors >= 1
    link.unlink()
    link.symlink_to(target)
    assert audit.flush(timeout=30)
    audit.close()
    assert [r["seq"] for r in read_jsonl(target)] == list(range(50))


async def test_aclose_flushes_and_later_emit_raises(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = open_audit_log(str(path))
    for i in range(1000):
        audit.emit("statement", seq=i)
    await audit.aclose()
    assert len(read_jsonl(path)) == 1000
    with pytest.raises(AuditLogClosedError):
        audit.emit("statement", seq=1000)
    with pytest.raises(AuditLogClosedError):
        audit.emit_line(b'{"event":"statement"}\n')
    await audit.aclose()  # idempotent
    audit.close()
    assert audit.flush() is True


def test_metrics_hooks_run() -> None:
    written: list[int] = []
    audit = AuditLog(MemorySink(), batch_size=10, on_written=written.append)
    for i in range(25):
        audit.emit("statement", seq=i)
    audit.close()
    assert sum(written) == 25


@pytest.mark.parametrize("close", ["atexit", "aclose"])
def test_stdout_mode(close: str) -> None:
    ending = "" if close == "atexit" else "asyncio.run(log.aclose())"
    code = (
        "import asyncio\n"
        "from pgsentry.audit import open_audit_log\n"
        "log = open_audit_log('-')\n"
        "for i in range(3000):\n"
        "    log.emit('statement', seq=i)\n" + ending + "\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, timeout=60
    )
    lines = result.stdout.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(3000))


def test_memory_log_helpers() -> None:
    audit = MemoryAuditLog()
    audit.emit(events.CONNECTION_OPEN, session_id="a")
    audit.emit(events.STATEMENT, session_id="a", text="SELECT 1")
    audit.emit(events.CONNECTION_CLOSE, session_id="a")
    assert [r["event"] for r in audit.events(events.STATEMENT, events.CONNECTION_CLOSE)] == [
        "statement",
        "connection_close",
    ]
    audit.clear()
    assert audit.records == []
    asyncio.run(audit.aclose())
