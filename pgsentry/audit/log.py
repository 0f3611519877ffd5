"""The audit log: non-blocking emit on the event loop, JSON Lines written by one writer thread.

Owns: AuditLog (queue + writer thread + backpressure signal), MemoryAuditLog (the same machinery
writing to memory, for tests) and open_audit_log() (path -> log).
Must not: block the event loop or drop a record. emit() serializes the record (encode.py, a few
microseconds with orjson) and appends the line to a deque; every write happens on the writer
thread, which holds the GIL only to join a batch and releases it for the system call. (Serializing
on the writer thread instead was measured slower: the thread shares the GIL, so it saved the
event loop no CPU and added GIL hand-offs.)

Backpressure, the documented choice: the queue is unbounded, so emit() never blocks and never
drops. When the sink is slower than the traffic, ``backlog`` grows past ``high_water`` and
``congested`` becomes true; sessions check it before reading the next client statement and, if
set, ``await drained()``, which returns once the backlog is back to ``low_water``. Clients are thus
slowed to the speed of the audit sink, memory stays bounded (about ``high_water`` records plus
what the sessions already in flight emit), and nothing is lost. If the sink fails (disk full),
the writer keeps the records and retries with backoff, so sessions pause rather than run
unaudited; at close, records a failing sink still refuses are written to stderr.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from itertools import repeat, starmap
from typing import Any

from pgsentry.audit.encode import format_ts, serialize
from pgsentry.audit.sinks import FileSink, MemorySink, Sink, StreamSink

__all__ = [
    "DEFAULT_HIGH_WATER",
    "AuditLog",
    "AuditLogClosedError",
    "MemoryAuditLog",
    "format_ts",
    "open_audit_log",
]

log = logging.getLogger(__name__)

DEFAULT_HIGH_WATER = 10_000
DEFAULT_BATCH_SIZE = 2_048
WRITER_INTERVAL = 0.02  # seconds: how stale the audit file may be under light traffic
CLOSE_RETRY_SECONDS = 10.0
_MAX_BACKOFF = 5.0


class AuditLogClosedError(RuntimeError):
    """emit() after close(): close the audit log only after every emitter has stopped."""


class AuditLog:
    """JSON Lines audit log; see the module docstring for the threading and backpressure model."""

    def __init__(
        self,
        sink: Sink,
        *,
        high_water: int = DEFAULT_HIGH_WATER,
        low_water: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_written: Callable[[int], object] | None = None,
        on_write_error: Callable[[], object] | None = None,
    ) -> None:
        """``on_written(n)`` / ``on_write_error()`` run on the writer thread (metrics hooks)."""
        if high_water < 1 or batch_size < 1:
            raise ValueError("high_water and batch_size must be positive")
        self.high_water = high_water
        self.low_water = high_water // 2 if low_water is None else low_water
        if not 0 <= self.low_water <= high_water:
            raise ValueError("low_water must be between 0 and high_water")
        self._sink = sink
        self._batch_size = batch_size
        self._queue: deque[bytes | threading.Event] = deque()
        self._append = self._queue.append
        #: Queue one record already serialized as one JSON line (see `encode.statement_line`);
        #: never blocks, never drops. The queue's own append while the log is open (this is
        #: called for every statement; the writer polls the queue every WRITER_INTERVAL), and
        #: a function raising AuditLogClosedError once close() has begun.
        self.emit_line: Callable[[bytes], None] = self._queue.append
        #: The lines not yet taken by the writer (read its length only), and a bound on
        #: it below which the log cannot be `congested` (the writer holds at most a batch;
        #: high_water and batch_size are fixed at construction).
        self.lines = self._queue
        self.congested_above = high_water - batch_size
        self._inflight = 0
        self._markers = 0  # flush markers queued and not yet taken by the writer
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._closing = False
        self._closed = False
        self._reopen_requested = False
        self._flush_requested = False
        self._on_written = on_written
        self._on_write_error = on_write_error
        #: Records handed to the sink so far, and failed sink writes (read by anyone).
        self.records_written = 0
        self.write_errors = 0
        self._thread = threading.Thread(target=self._run, name="pgsentry-audit", daemon=True)
        self._thread.start()
        _live_logs.add(self)

    # -- event-loop side -------------------------------------------------------------------

    def emit(self, event: str, /, **fields: object) -> None:
        """Serialize one record now and queue it; never blocks, never drops."""
        if self._closing:
            raise AuditLogClosedError("audit log closed; cannot emit a record")
        self._append(serialize(time.time(), event, fields))
        # Wake the writer early only for a big batch: waking it for every record would
        # hand the GIL back and forth on each one.
        if len(self._queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    def _emit_after_close(self, line: bytes) -> None:
        raise AuditLogClosedError("audit log closed; cannot emit a record")

    @property
    def backlog(self) -> int:
        """Records emitted but not yet handed to the sink (for a gauge)."""
        return len(self._queue) + self._inflight

    @property
    def congested(self) -> bool:
        """True when the backlog exceeds high_water: emitters should ``await drained()``."""
        return len(self._queue) + self._inflight > self.high_water

    async def drained(self) -> None:
        """Return once the backlog is at or below low_water (immediately if it already is)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self.backlog <= self.low_water or self._closed:
                return
            entry = (loop, fut)
            self._waiters.append(entry)
        try:
            await fut
        finally:  # cancelled: forget the waiter (a resolved one was already taken off)
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)

    def reopen(self) -> None:
        """Ask the writer to reopen the sink before its next write (call on SIGHUP/rotation)."""
        self._reopen_requested = True
        self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every record emitted before this call is written; False on timeout."""
        if self._closed or threading.current_thread() is self._thread:
            return self._closed
        if self._closing:
            self.close()
            return True
        marker = threading.Event()
        with self._lock:
            self._markers += 1  # counted before it is queued: see _take_batch
        self._append(marker)
        self._flush_requested = True
        self._wake.set()
        return marker.wait(timeout)

    def close(self) -> None:
        """Write everything, stop the writer thread and close the sink (idempotent, blocking)."""
        with self._lock:
            if self._closing:
                already = True
            else:
                already, self._closing = False, True
                self.emit_line = self._emit_after_close
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        if not already:
            # Records appended by an emit() that raced with close() are written here.
            leftovers = [item for item in self._queue if isinstance(item, bytes)]
            if leftovers:
                self._write(b"".join(leftovers), len(leftovers))
            for item in self._queue:
                if isinstance(item, threading.Event):
                    item.set()
            self._queue.clear()
            try:
                self._sink.close()
            except OSError as exc:
                log.error("closing audit sink failed: %s", exc)
            self._closed = True
            self._release_waiters(force=True)
            _live_logs.discard(self)

    async def aclose(self) -> None:
        """close() without blocking the event loop."""
        await asyncio.to_thread(self.close)

    # -- writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        while True:
            if self._reopen_requested:
                self._reopen_requested = False
                try:
                    self._sink.reopen()
                except OSError as exc:
                    log.error("reopening audit sink failed (will retry on write): %s", exc)
            if not queue:
                if self._closing:
                    return
                self._wake.clear()
                if not queue and not self._urgent():
                    self._wake.wait(WRITER_INTERVAL)
                continue
            batch, marker = self._take_batch()
            if batch:
                self._write(b"".join(batch), len(batch))
            self._inflight = 0
            if marker is not None:
                marker.set()
            self._release_waiters()
            # Write at most once per WRITER_INTERVAL unless a full batch is waiting: under
            # steady traffic the queue is never empty, and writing whatever arrived during
            # the last write would take the GIL from the event loop hundreds of times a second.
            if marker is None and len(queue) < self._batch_size:
                self._wake.clear()
                if not self._urgent():
                    self._wake.wait(WRITER_INTERVAL)

    def _take_batch(self) -> tuple[list[bytes], threading.Event | None]:
        """Pop the next batch: up to batch_size lines, stopping at a flush marker."""
        queue = self._queue
        n = min(len(queue), self._batch_size)
        # Read after len(): flush() counts its marker before queueing it, so a marker among
        # those n items is always seen here.
        if not self._markers:
            # Popped in C, without a bytecode per record: this runs for every statement.
            lines: list[bytes] = list(starmap(queue.popleft, repeat((), n)))  # type: ignore[arg-type]
            self._inflight = n
            return lines, None
        batch: list[bytes] = []
        for _ in range(n):
            item = queue.popleft()
            if isinstance(item, threading.Event):
                with self._lock:
                    self._markers -= 1
                return batch, item
            self._inflight += 1
            batch.append(item)
        return batch, None

    def _urgent(self) -> bool:
        """Something the writer must not sit on: a flush, a reopen, close, or a full batch."""
        if self._flush_requested:
            self._flush_requested = False
            return True
        return self._closing or self._reopen_requested or len(self._queue) >= self._batch_size

    def _write(self, data: bytes, count: int) -> None:
        backoff = 0.05
        failing_since: float | None = None
        while True:
            try:
                self._sink.write(data)
                if failing_since is not None:
                    log.warning("audit sink recovered")
                self.records_written += count
                if self._on_written is not None:
                    _call_hook(self._on_written, count)
                return
            except OSError as exc:
                self.write_errors += 1
                if self._on_write_error is not None:
                    _call_hook(self._on_write_error)
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    log.error("audit sink write failed, keeping records and retrying: %s", exc)
                if self._closing and now - failing_since > CLOSE_RETRY_SECONDS:
                    log.error("audit sink still failing at close; writing records to stderr")
                    sys.stderr.buffer.write(data)
                    sys.stderr.flush()
                    return
            time.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
            with contextlib.suppress(OSError):
                self._sink.reopen()

    def _release_waiters(self, force: bool = False) -> None:
        if not self._waiters or not (force or self.backlog <= self.low_water):
            return
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
                loop.call_soon_threadsafe(_resolve, fut)


def _call_hook(hook: Callable[..., object], *args: object) -> None:
    try:
        hook(*args)
    except Exception:
        log.exception("audit metrics hook failed")


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class MemoryAuditLog(AuditLog):
    """The real AuditLog writing into memory; ``records`` returns what a file would contain."""

    def __init__(self, *, high_water: int = DEFAULT_HIGH_WATER, batch_size: int = 256) -> None:
        self._memory = MemorySink()
        super().__init__(self._memory, high_water=high_water, batch_size=batch_size)

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every record emitted so far, parsed back from its JSON line (flushes first)."""
        self.flush()
        return [json.loads(line) for line in self._memory.lines()]

    def events(self, *names: str) -> list[dict[str, Any]]:
        """The records whose event is one of ``names``, in order."""
        return [r for r in self.records if r["event"] in names]

    def clear(self) -> None:
        self.flush()
        self._memory.clear()


def open_audit_log(path: str, **options: Any) -> AuditLog:
    """``"-"`` writes to stdout; anything else appends to that file (created with mode 0600)."""
    sink: Sink = StreamSink(sys.stdout.buffer) if path == "-" else FileSink(path)
    return AuditLog(sink, **options)


_live_logs: weakref.WeakSet[AuditLog] = weakref.WeakSet()


@atexit.register
def _flush_at_exit(logs: Iterable[AuditLog] = _live_logs) -> None:
    for audit_log in list(logs):
        audit_log.close()
