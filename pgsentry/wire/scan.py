"""The codec's hot loop: walk message headers until one needs a closer look.

Owns `scan(data, pos, table) -> (pos, type, length)` and `type_table(...)`. The native
version (`_scan.c`, built when a C compiler is there) and this pure-Python twin behave
the same; `scan` is whichever is available. Sans-I/O, no allocation per message.

`table` has one byte per message type: PASS (0) messages are walked over; for INSPECT
and INVALID types scan stops and returns that message's position, type and length.
type -1: the message at `pos` is incomplete (length 0 when its header is incomplete);
type -2: its length field is below 4.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from pgsentry import native

PASS = 0
INSPECT = 1
INVALID = 2

_unpack = struct.Struct("!I").unpack_from


def type_table(valid: Iterable[int], inspect: Iterable[int]) -> bytes:
    """256 entries: INVALID for unknown types, INSPECT for `inspect`, PASS otherwise."""
    table = bytearray([INVALID]) * 256
    for t in valid:
        table[t] = PASS
    for t in inspect:
        table[t] = INSPECT
    return bytes(table)


def py_scan(data: bytes, pos: int, table: bytes) -> tuple[int, int, int]:
    """Pure-Python twin of the native scan (used when it could not be built)."""
    n = len(data)
    while pos + 5 <= n:
        t = data[pos]
        length: int = _unpack(data, pos + 1)[0]
        if length < 4:
            return pos, -2, length
        if table[t]:
            return pos, t, length
        if n - pos - 1 < length:
            return pos, -1, length
        pos += 1 + length
    return pos, -1, 0


_native = native.load("pgsentry.wire._scan")
scan: Callable[[bytes, int, bytes], tuple[int, int, int]] = (
    py_scan if _native is None else _native.scan
)
NATIVE = _native is not None
