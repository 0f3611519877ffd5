"""Protocol errors and the one table of error/notice constructors a client may see.

Owns `ProtocolError` (the only exception the codec raises for bad input) and the
builders of ErrorResponse / NoticeResponse with real SQLSTATEs. No I/O.
"""

from __future__ import annotations

import struct

_HDR = struct.Struct("!cI")

# SQLSTATEs pgsentry itself produces (documented in the README).
PROTOCOL_VIOLATION = "08P01"
CONNECTION_FAILURE = "08006"
CANNOT_CONNECT_NOW = "57P03"
ADMIN_SHUTDOWN = "57P01"
INSUFFICIENT_PRIVILEGE = "42501"
QUERY_CANCELED = "57014"
FEATURE_NOT_SUPPORTED = "0A000"
HOLD_TIMEOUT = "PS001"  # pgsentry class "PS": a held statement was not decided in time
INVALID_AUTHORIZATION = "28000"


class ProtocolError(Exception):
    """Malformed or unacceptable bytes from a peer. Ends only that connection."""

    def __init__(self, message: str, sqlstate: str = PROTOCOL_VIOLATION) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _fields(
    severity: str,
    sqlstate: str,
    message: str,
    detail: str | None,
    hint: str | None,
) -> bytes:
    parts = [
        b"S",
        severity.encode(),
        b"\0V",
        severity.encode(),
        b"\0C",
        sqlstate.encode(),
        b"\0M",
        message.encode("utf-8", "replace"),
        b"\0",
    ]
    if detail:
        parts += [b"D", detail.encode("utf-8", "replace"), b"\0"]
    if hint:
        parts += [b"H", hint.encode("utf-8", "replace"), b"\0"]
    parts.append(b"\0")
    return b"".join(parts)


def error_response(
    sqlstate: str,
    message: str,
    *,
    detail: str | None = None,
    hint: str | None = None,
    severity: str = "ERROR",
) -> bytes:
    """An ErrorResponse ('E') message, header included."""
    body = _fields(severity, sqlstate, message, detail, hint)
    return _HDR.pack(b"E", len(body) + 4) + body


def notice_response(
    message: str,
    *,
    detail: str | None = None,
    hint: str | None = None,
    sqlstate: str = "01000",
) -> bytes:
    """A NoticeResponse ('N') message with severity NOTICE."""
    body = _fields("NOTICE", sqlstate, message, detail, hint)
    return _HDR.pack(b"N", len(body) + 4) + body


def fatal(sqlstate: str, message: str) -> bytes:
    """A FATAL ErrorResponse: the connection ends after it."""
    return error_response(sqlstate, message, severity="FATAL")


def parse_error_fields(body: bytes | memoryview) -> dict[str, str]:
    """Decode the fields of an ErrorResponse / NoticeResponse body (after the header)."""
    out: dict[str, str] = {}
    data = bytes(body)
    pos = 0
    n = len(data)
    while pos < n and data[pos] != 0:
        code = chr(data[pos])
        end = data.find(b"\0", pos + 1)
        if end < 0:
            raise ProtocolError("unterminated field in ErrorResponse")
        out[code] = data[pos + 1 : end].decode("utf-8", "replace")
        pos = end + 1
    return out
