"""Audit sinks: where serialized JSON Lines bytes go.

Owns: the byte destinations of the audit log (an append-only file, a stream such as stdout, and
an in-memory list for tests) and their rotation behaviour.
Must not: be called from the event loop. Only the audit writer thread calls write(), reopen() and
close(); a sink may block as long as it needs.
"""

from __future__ import annotations

import os
import threading
from typing import BinaryIO, Protocol

FILE_MODE = 0o600
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class Sink(Protocol):
    """A byte destination for complete JSON Lines (each call gets whole lines)."""

    def write(self, data: bytes) -> None: ...

    def reopen(self) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """Appends to a file created with mode 0600; reopen() follows a rename (log rotation)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, _OPEN_FLAGS, FILE_MODE)

    def write(self, data: bytes) -> None:
        if self._fd < 0:
            self._fd = self._open()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def reopen(self) -> None:
        """Close and open the path again, so writes go to a fresh file after a rotation."""
        new_fd = self._open()
        old_fd, self._fd = self._fd, new_fd
        if old_fd >= 0:
            os.close(old_fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class StreamSink:
    """Writes to an already open binary stream (stdout); never closes it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    def reopen(self) -> None:
        """Nothing to reopen: the stream's owner rotates it (e.g. the container runtime)."""

    def close(self) -> None:
        self._stream.flush()


class MemorySink:
    """Keeps every line written, in order; thread-safe to read while the writer appends."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        lines = data.splitlines()
        with self._lock:
            self._lines.extend(lines)

    def lines(self) -> list[bytes]:
        with self._lock:
            return list(self._lines)

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()

    def reopen(self) -> None:
        """Nothing to reopen."""

    def close(self) -> None:
        """Keeps the lines: tests read them after the log is closed."""
