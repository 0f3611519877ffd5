"""The audit log: non-blocking emit on the event loop, JSON Lines written by one writer thread.

Owns: AuditLog (queue + writer thread + backpressure signal), MemoryAuditLog (the same machinery
writing to memory, for tests) and open_audit_log() (path -> log).
Must not: block the event loop or drop a record. emit() only appends a tuple to a deque; the
timestamp formatting, JSON serialization and every write happen on the writer thread.

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
import base64
import contextlib
import dataclasses
import datetime as dt
import enum
import json
import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import orjson

from pgsentry.audit.sinks import FileSink, MemorySink, Sink, StreamSink

log = logging.getLogger(__name__)

DEFAULT_HIGH_WATER = 10_000
DEFAULT_BATCH_SIZE = 2_048
WRITER_INTERVAL = 0.02  # seconds: how stale the audit file may be under light traffic
CLOSE_RETRY_SECONDS = 10.0
_MAX_BACKOFF = 5.0

_Record = tuple[float, str, "dict[str, object] | DeferredFields"]


class AuditLogClosedError(RuntimeError):
    """emit() after close(): close the audit log only after every emitter has stopped."""


_ts_cache: tuple[int, str] = (-1, "")


def format_ts(ts: float) -> str:
    """RFC 3339 UTC with microseconds, e.g. ``2024-05-01T12:00:00.123456Z`` (``time.time()`` in)."""
    global _ts_cache
    micros = round(ts * 1_000_000)
    seconds, fraction = divmod(micros, 1_000_000)
    cached_seconds, prefix = _ts_cache
    if seconds != cached_seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _ts_cache = (seconds, prefix)
    return f"{prefix}.{fraction:06d}Z"


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return model_dump(mode="json")
    return str(value)


# orjson encodes a typical record several times faster than the stdlib (the writer thread
# shares the GIL with the event loop, so this is proxy CPU per statement); records it refuses
# (lone surrogates from undecodable SQL text, exotic values) go through the stdlib encoder.
_ORJSON_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATACLASS

_encode = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_json_default, check_circular=True
).encode


class DeferredFields(Protocol):
    """A record whose fields are built on the writer thread, not on the event loop."""

    def audit_fields(self) -> dict[str, object]: ...


def serialize(ts: float, event: str, fields: dict[str, object] | DeferredFields) -> bytes:
    """One record as one JSON line (with the newline); never raises on odd field values."""
    stamp = format_ts(ts)
    if not isinstance(fields, dict):
        fields = fields.audit_fields()
    record: dict[str, object] = {"ts": stamp, "event": event, **fields}
    if "ts" in fields or "event" in fields:
        record["ts"] = stamp
        record["event"] = event
    try:
        return orjson.dumps(record, default=_json_default, option=_ORJSON_OPTIONS)
    except Exception:
        pass
    try:
        text = _encode(record)
    except Exception as exc:  # a field's own __str__/model_dump may raise anything
        text = _encode({"ts": stamp, "event": event, "unserializable": repr(fields)[:10_000]})
        log.error("audit record for %s was not serializable: %s", event, exc)
    # Lone surrogates (SQL text decoded with surrogateescape) become valid \\udcXX JSON escapes.
    return text.encode("utf-8", "backslashreplace") + b"\n"


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
        self._queue: deque[_Record | threading.Event] = deque()
        self._append = self._queue.append
        self._inflight = 0
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._closing = False
        self._closed = False
        self._reopen_requested = False
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
        """Queue one record; O(1), never blocks, never drops. Do not mutate field values after."""
        if self._closing:
            raise AuditLogClosedError(f"audit log closed; cannot emit {event!r}")
        self._append((time.time(), event, fields))
        # The writer polls every WRITER_INTERVAL; waking it for every record would hand
        # the GIL back and forth on each statement. Wake it early only for a big batch.
        if len(self._queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    def emit_deferred(self, event: str, record: DeferredFields) -> None:
        """Like emit(), but `record.audit_fields()` runs on the writer thread (hot path).
        The record must not change after this call."""
        if self._closing:
            raise AuditLogClosedError(f"audit log closed; cannot emit {event!r}")
        self._append((time.time(), event, record))
        if len(self._queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

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
        self._append(marker)
        self._wake.set()
        return marker.wait(timeout)

    def close(self) -> None:
        """Write everything, stop the writer thread and close the sink (idempotent, blocking)."""
        with self._lock:
            if self._closing:
                already = True
            else:
                already, self._closing = False, True
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        if not already:
            # Records appended by an emit() that raced with close() are written here.
            leftovers = [item for item in self._queue if not isinstance(item, threading.Event)]
            if leftovers:
                self._write(b"".join(serialize(*item) for item in leftovers), len(leftovers))
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
                if not queue and not self._closing and not self._reopen_requested:
                    self._wake.wait(WRITER_INTERVAL)
                continue
            batch: list[bytes] = []
            marker: threading.Event | None = None
            while queue and len(batch) < self._batch_size:
                item = queue.popleft()
                if isinstance(item, threading.Event):
                    marker = item
                    break
                self._inflight += 1
                batch.append(serialize(*item))
            if batch:
                self._write(b"".join(batch), len(batch))
            self._inflight = 0
            if marker is not None:
                marker.set()
            self._release_waiters()

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
