"""Backpressure: congested/drained, and no drops when 200k records meet a slow file."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgsentry.audit import AuditLog, MemorySink, open_audit_log

BURST = 200_000


class GateSink(MemorySink):
    """A sink whose writes wait until the test opens the gate (a sink that is stuck)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def write(self, data: bytes) -> None:
        self.gate.wait()
        super().write(data)


class SlowReader:
    """Reads a FIFO in small chunks with pauses, and only once ``go`` is set: until then the
    pipe fills and the writer thread is stuck, so congestion is certain, not a race."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.go = threading.Event()
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb", buffering=0) as fifo:
            self.go.wait()
            while chunk := fifo.read(16384):
                self.chunks.append(chunk)
                time.sleep(0.0005)

    def records(self) -> list[dict[str, object]]:
        self.go.set()
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()
        return [json.loads(line) for line in b"".join(self.chunks).splitlines()]


@pytest.fixture
def slow_fifo(tmp_path: Path) -> Iterator[tuple[Path, SlowReader]]:
    path = tmp_path / "audit.fifo"
    os.mkfifo(path)
    reader = SlowReader(path)  # opening for write below unblocks its open()
    yield path, reader


async def test_congested_then_drained() -> None:
    sink = GateSink()
    audit = AuditLog(sink, high_water=100, batch_size=10)
    assert not audit.congested
    await asyncio.wait_for(audit.drained(), 5)  # nothing queued: returns at once
    for i in range(101):
        audit.emit("statement", seq=i)
    assert audit.backlog == 101  # nothing can leave while the sink is stuck
    assert audit.congested
    waiter = asyncio.ensure_future(audit.drained())
    await asyncio.sleep(0.05)
    assert not waiter.done()  # the gate is closed: the backlog cannot shrink
    sink.gate.set()
    await asyncio.wait_for(waiter, 30)
    assert audit.backlog <= audit.low_water
    assert not audit.congested
    await audit.aclose()
    assert [json.loads(x)["seq"] for x in sink.lines()] == list(range(101))


async def test_cancelled_drained_waiter_is_forgotten() -> None:
    sink = GateSink()
    audit = AuditLog(sink, high_water=10, batch_size=5)
    for i in range(20):
        audit.emit("statement", seq=i)
    waiter = asyncio.ensure_future(audit.drained())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert audit._waiters == []
    sink.gate.set()
    await audit.aclose()
    assert len(sink.lines()) == 20


async def test_close_releases_drained_waiters() -> None:
    sink = GateSink()
    audit = AuditLog(sink, high_water=10, batch_size=5)
    for i in range(20):
        audit.emit("statement", seq=i)
    waiter = asyncio.ensure_future(audit.drained())
    closing = asyncio.ensure_future(audit.aclose())
    await asyncio.sleep(0)
    sink.gate.set()
    await asyncio.wait_for(asyncio.gather(waiter, closing), 30)
    assert len(sink.lines()) == 20


async def test_burst_without_backpressure_drops_nothing(
    slow_fifo: tuple[Path, SlowReader],
) -> None:
    path, reader = slow_fifo
    audit = open_audit_log(str(path), high_water=1_000)
    for i in range(BURST):
        audit.emit("statement", seq=i, text="SELECT * FROM accounts WHERE id = $1")
    assert audit.congested  # the reader has not started: the pipe is full
    reader.go.set()
    await audit.aclose()
    seqs = [r["seq"] for r in reader.records()]
    assert seqs == list(range(BURST))


async def test_sessions_that_respect_backpressure_keep_memory_bounded(
    slow_fifo: tuple[Path, SlowReader],
) -> None:
    path, reader = slow_fifo
    high_water = 2_000
    audit = open_audit_log(str(path), high_water=high_water, batch_size=256)
    max_backlog = 0
    waits = 0

    async def session(sid: int, count: int) -> None:
        nonlocal max_backlog, waits
        for i in range(count):
            if audit.congested:  # what a session does before reading the next statement
                waits += 1
                reader.go.set()  # the reader starts only once a session had to wait
                await audit.drained()
            audit.emit("statement", session_id=sid, seq=i)
            max_backlog = max(max_backlog, audit.backlog)
            if i % 100 == 0:
                await asyncio.sleep(0)

    sessions = 4
    await asyncio.gather(*(session(s, BURST // sessions) for s in range(sessions)))
    await audit.aclose()
    records = reader.records()
    assert len(records) == BURST
    assert waits > 0
    # Every session checks before each emit, so at most one record each above the mark.
    assert max_backlog <= high_water + sessions
    for s in range(sessions):
        assert [r["seq"] for r in records if r["session_id"] == s] == list(range(BURST // sessions))
