"""Protocol 3.0 constants and the small message builders/parsers the proxy needs.

Owns byte-level encoding of individual messages (no framing state, no I/O).
Names follow the PostgreSQL protocol documentation ("Message Formats").
"""

from __future__ import annotations

import struct

from pgsentry.wire.errors import ProtocolError

HEADER = struct.Struct("!cI")
INT32 = struct.Struct("!i")
UINT32 = struct.Struct("!I")
INT16 = struct.Struct("!h")

PROTOCOL_3_0 = 196608  # 3 << 16
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

MAX_STARTUP_PACKET = 10000  # same limit as PostgreSQL (MAX_STARTUP_PACKET_LENGTH)

# Frontend message types (as ints: bytes[i] yields ints).
F_QUERY = ord("Q")
F_PARSE = ord("P")
F_BIND = ord("B")
F_EXECUTE = ord("E")
F_DESCRIBE = ord("D")
F_CLOSE = ord("C")
F_SYNC = ord("S")
F_FLUSH = ord("H")
F_TERMINATE = ord("X")
F_FUNCTION_CALL = ord("F")
F_COPY_DATA = ord("d")
F_COPY_DONE = ord("c")
F_COPY_FAIL = ord("f")
F_PASSWORD = ord("p")  # PasswordMessage / SASLInitialResponse / SASLResponse / GSSResponse

FRONTEND_TYPES = frozenset(b"QPBEDCSHXFdcfp")

# Backend message types.
B_AUTHENTICATION = ord("R")
B_BACKEND_KEY_DATA = ord("K")
B_PARAMETER_STATUS = ord("S")
B_READY_FOR_QUERY = ord("Z")
B_COMMAND_COMPLETE = ord("C")
B_ERROR_RESPONSE = ord("E")
B_NOTICE_RESPONSE = ord("N")
B_NEGOTIATE_PROTOCOL_VERSION = ord("v")
B_EMPTY_QUERY = ord("I")
B_PORTAL_SUSPENDED = ord("s")
B_COPY_IN = ord("G")
B_COPY_OUT = ord("H")
B_COPY_BOTH = ord("W")
B_FUNCTION_CALL_RESPONSE = ord("V")

BACKEND_TYPES = frozenset(b"R K S Z C E N v I s G H W V T D t n 1 2 3 A d c".replace(b" ", b""))

AUTH_OK = 0
AUTH_SASL = 10


def cstring(data: bytes, pos: int) -> tuple[str, int]:
    """Read a NUL-terminated string at `pos`; return it and the position after the NUL."""
    end = data.find(b"\0", pos)
    if end < 0:
        raise ProtocolError("missing string terminator")
    if end == pos:
        return "", end + 1  # unnamed portals and statements: the common case
    return data[pos:end].decode("utf-8", "surrogateescape"), end + 1


def ready_for_query(status: bytes) -> bytes:
    return b"Z\x00\x00\x00\x05" + status


def backend_key_data(pid: int, secret: int) -> bytes:
    return b"K\x00\x00\x00\x0c" + UINT32.pack(pid) + UINT32.pack(secret)


def negotiate_protocol_version(newest: int, unsupported: list[str]) -> bytes:
    """`newest` is the full version number (major << 16 | minor), as PostgreSQL sends it."""
    body = INT32.pack(newest) + INT32.pack(len(unsupported))
    body += b"".join(o.encode() + b"\0" for o in unsupported)
    return HEADER.pack(b"v", len(body) + 4) + body


def ssl_request() -> bytes:
    return INT32.pack(8) + INT32.pack(SSL_REQUEST_CODE)


def cancel_request(pid: int, secret: int) -> bytes:
    return INT32.pack(16) + INT32.pack(CANCEL_REQUEST_CODE) + UINT32.pack(pid) + UINT32.pack(secret)


def startup_message(params: dict[str, str]) -> bytes:
    body = INT32.pack(PROTOCOL_3_0)
    body += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return INT32.pack(len(body) + 4) + body


def message(type_: bytes, body: bytes) -> bytes:
    return HEADER.pack(type_, len(body) + 4) + body


def query(sql: str) -> bytes:
    return message(b"Q", sql.encode() + b"\0")


def parse_query(msg: bytes) -> str:
    """A whole Query ('Q') message, header included -> its SQL text."""
    if len(msg) < 6 or msg[-1] != 0:
        raise ProtocolError("Query message is not NUL-terminated")
    return msg[5:-1].decode("utf-8", "surrogateescape")


def parse_parse(body: bytes) -> tuple[str, str]:
    """Body of a Parse ('P') message -> (statement name, SQL text)."""
    name, pos = cstring(body, 0)
    sql, pos = cstring(body, pos)
    if pos + 2 > len(body):
        raise ProtocolError("Parse message too short")
    return name, sql


def parse_bind_names(msg: bytes) -> tuple[str, str]:
    """A whole Bind ('B') message, header included -> (portal name, statement name)."""
    portal, pos = cstring(msg, 5)
    stmt, _ = cstring(msg, pos)
    return portal, stmt


def parse_bind_parameters(msg: bytes) -> tuple[list[bytes | None], list[int]]:
    """A whole Bind ('B') message -> (parameter values, None for NULL; their format codes,
    one per value: 0 text, 1 binary). Raises ProtocolError on a malformed message."""
    _, pos = cstring(msg, 5)
    _, pos = cstring(msg, pos)
    try:
        (n_formats,) = INT16.unpack_from(msg, pos)
        formats = list(struct.unpack_from(f"!{n_formats}h", msg, pos + 2))
        pos += 2 + 2 * n_formats
        (n_values,) = INT16.unpack_from(msg, pos)
        pos += 2
        values: list[bytes | None] = []
        for _ in range(n_values):
            (length,) = INT32.unpack_from(msg, pos)
            pos += 4
            if length < 0:
                values.append(None)
                continue
            if pos + length > len(msg):
                raise ProtocolError("Bind parameter runs past the message")
            values.append(msg[pos : pos + length])
            pos += length
    except struct.error as exc:
        raise ProtocolError(f"malformed Bind message: {exc}") from None
    if n_formats not in (0, 1, n_values) or n_formats < 0 or n_values < 0:
        raise ProtocolError("Bind message's format codes do not match its parameters")
    codes = formats * n_values if n_formats == 1 else formats or [0] * n_values
    return values, codes


def parse_close(body: bytes) -> tuple[str, str]:
    """Body of Close ('C') or Describe ('D') -> (kind 'S' or 'P', name)."""
    if not body:
        raise ProtocolError("Close message too short")
    name, _ = cstring(body, 1)
    return chr(body[0]), name


def parse_execute_portal(msg: bytes) -> str:
    """A whole Execute ('E') message, header included -> its portal name."""
    portal, _ = cstring(msg, 5)
    return portal


def parse_function_call_oid(body: bytes) -> int:
    if len(body) < 4:
        raise ProtocolError("FunctionCall message too short")
    return int(UINT32.unpack_from(body, 0)[0])


def parse_parameter_status(body: bytes) -> tuple[str, str]:
    name, pos = cstring(body, 0)
    value, _ = cstring(body, pos)
    return name, value


def parse_command_tag(body: bytes) -> str:
    return body.rstrip(b"\0").decode("utf-8", "replace")


def sasl_mechanisms(body: bytes) -> list[str]:
    """AuthenticationSASL body (after the int32 code) -> mechanism names."""
    out = []
    pos = 4
    while pos < len(body) and body[pos] != 0:
        name, pos = cstring(body, pos)
        out.append(name)
    return out


def authentication_sasl(mechanisms: list[str]) -> bytes:
    body = INT32.pack(AUTH_SASL) + b"".join(m.encode() + b"\0" for m in mechanisms) + b"\0"
    return message(b"R", body)
