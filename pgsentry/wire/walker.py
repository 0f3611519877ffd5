"""Framing of typed protocol messages: walks message headers over arbitrary chunks.

Owns splitting a byte stream into messages without copying the ones nobody needs to
read: messages whose type is in `inspect` come out whole; every other message is
passed through as raw bytes as soon as they arrive (a 1 GB DataRow is never buffered).
Sans-I/O; raises only `ProtocolError`.
"""

from __future__ import annotations

from pgsentry.wire.errors import ProtocolError
from pgsentry.wire.scan import INVALID, scan, type_table

#: PostgreSQL refuses messages over MaxAllocSize (1 GB) too.
DEFAULT_MAX_MESSAGE = 1 << 30

# Item = raw pass-through bytes, or (type, whole message bytes incl. header)
Item = bytes | memoryview | tuple[int, bytes]


_tables: dict[tuple[frozenset[int], frozenset[int]], bytes] = {}


class MessageWalker:
    """Feed chunks, get items in stream order.

    Items are either pass-through byte runs (`bytes`/`memoryview`) or
    `(type, message)` tuples for inspected types, where `message` includes the
    5-byte header. Concatenating all items reproduces the input exactly.
    """

    __slots__ = ("_max", "_partial", "_partial_need", "_skip", "_table", "at_boundary")

    def __init__(
        self,
        inspect: frozenset[int],
        valid: frozenset[int],
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        table = _tables.get((inspect, valid))
        if table is None:
            table = _tables[(inspect, valid)] = type_table(valid, inspect)
        self._table = table  # shared: every session walks with the same two tables
        self._max = max_message
        self._skip = 0  # bytes still to pass through of a message being streamed
        self._partial: list[bytes] = []  # pieces of an incomplete header / inspected message
        self._partial_need = 0  # total bytes of that message (0 = header still incomplete)
        #: True when no message is half-received (an attribute: read for every chunk).
        self.at_boundary = True

    def feed(self, data: bytes) -> list[Item]:
        items = self._feed(data)
        self.at_boundary = self._skip == 0 and not self._partial
        return items

    def _feed(self, data: bytes) -> list[Item]:
        items: list[Item] = []
        n = len(data)
        pos = 0
        if self._skip:
            if self._skip >= n:
                self._skip -= n
                items.append(data)
                return items
            items.append(memoryview(data)[: self._skip])
            pos = self._skip
            self._skip = 0
        elif self._partial:
            if self._partial_need:  # the body of an inspected message
                pos = self._continue_message(data, items)
                if pos < 0:
                    return items
            else:  # a header split across chunks: re-walk it joined with the new bytes
                self._partial.append(data)
                data = b"".join(self._partial)
                self._partial = []
                n = len(data)
        run_start = pos
        table = self._table
        while True:
            pos, t, length = scan(data, pos, table)
            if t < 0:
                if t == -2:
                    raise ProtocolError(f"invalid message length {length}")
                if length:  # a pass-through message continues past this chunk: stream it
                    self._skip = pos + 1 + length - n
                    pos = n
                break
            if table[t] == INVALID:
                raise ProtocolError(f"invalid message type {t:#04x}")
            if length > self._max:
                raise ProtocolError(f"message of type {chr(t)!r} too large: {length} bytes")
            end = pos + 1 + length
            if end > n:
                self._partial_need = end - pos
                break
            if pos > run_start:
                items.append(memoryview(data)[run_start:pos])
            items.append((t, data[pos:end]))
            run_start = pos = end
        if pos < n:  # an incomplete header (need = 0) or inspected message: keep it
            if pos > run_start:
                items.append(memoryview(data)[run_start:pos])
            if n - pos < 5:
                self._partial_need = 0
            self._partial = [data[pos:]]
            return items
        if run_start == 0:
            items.append(data)
        elif run_start < n:
            items.append(memoryview(data)[run_start:])
        return items

    def _continue_message(self, data: bytes, items: list[Item]) -> int:
        """Add bytes to an incomplete inspected message; return where the rest starts, or -1."""
        missing = self._partial_need - sum(len(p) for p in self._partial)
        if len(data) < missing:
            self._partial.append(data)
            return -1
        self._partial.append(data[:missing])
        whole = b"".join(self._partial)
        self._partial = []
        self._partial_need = 0
        items.append((whole[0], whole))
        return missing
