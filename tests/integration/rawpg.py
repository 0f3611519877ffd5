"""A tiny, independent PostgreSQL v3 client over a raw socket, for tests real drivers cannot do.

Owns: building frontend messages by hand and reading backend messages, written from the
protocol docs. Must not import pgsentry (it is the oracle the proxy is checked against).
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102


def cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


def startup_message(
    user: str = "postgres",
    database: str = "postgres",
    version: tuple[int, int] = (3, 0),
    **extra: str,
) -> bytes:
    params = {"user": user, "database": database, **extra}
    body = struct.pack("!i", (version[0] << 16) | version[1])
    body += b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\x00"
    return struct.pack("!i", len(body) + 4) + body


def ssl_request() -> bytes:
    return struct.pack("!ii", 8, SSL_REQUEST_CODE)


def gssenc_request() -> bytes:
    return struct.pack("!ii", 8, GSSENC_REQUEST_CODE)


def cancel_request(pid: int, secret: int) -> bytes:
    return struct.pack("!iiII", 16, CANCEL_REQUEST_CODE, pid & 0xFFFFFFFF, secret & 0xFFFFFFFF)


def query(sql: str) -> bytes:
    return message(b"Q", cstr(sql))


def parse(name: str, sql: str, oids: Sequence[int] = ()) -> bytes:
    body = cstr(name) + cstr(sql) + struct.pack("!h", len(oids))
    body += b"".join(struct.pack("!I", o) for o in oids)
    return message(b"P", body)


def bind(
    portal: str,
    statement: str,
    params: Sequence[bytes | None] = (),
    param_formats: Sequence[int] = (),
    result_formats: Sequence[int] = (),
) -> bytes:
    body = cstr(portal) + cstr(statement)
    body += struct.pack("!h", len(param_formats)) + b"".join(
        struct.pack("!h", f) for f in param_formats
    )
    body += struct.pack("!h", len(params))
    for value in params:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    body += struct.pack("!h", len(result_formats)) + b"".join(
        struct.pack("!h", f) for f in result_formats
    )
    return message(b"B", body)


def describe(kind: bytes, name: str) -> bytes:
    return message(b"D", kind + cstr(name))


def execute(portal: str, max_rows: int = 0) -> bytes:
    return message(b"E", cstr(portal) + struct.pack("!i", max_rows))


def close(kind: bytes, name: str) -> bytes:
    return message(b"C", kind + cstr(name))


def sync() -> bytes:
    return message(b"S")


def terminate() -> bytes:
    return message(b"X")


def function_call(
    oid: int, args: Sequence[bytes | None], arg_format: int = 1, result_format: int = 1
) -> bytes:
    body = struct.pack("!I", oid) + struct.pack("!hh", 1, arg_format)
    body += struct.pack("!h", len(args))
    for value in args:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    body += struct.pack("!h", result_format)
    return message(b"F", body)


def error_fields(payload: bytes) -> dict[str, str]:
    """Fields of an ErrorResponse/NoticeResponse payload keyed by their one-letter codes."""
    fields: dict[str, str] = {}
    for part in payload.split(b"\x00"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


@dataclass
class Msg:
    kind: bytes
    payload: bytes

    @property
    def fields(self) -> dict[str, str]:
        return error_fields(self.payload)

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", "")


class RawConn:
    """A blocking socket plus a read buffer; every read has a deadline."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection((host, port), timeout)
        self.timeout = timeout
        self.buf = b""
        self.backend_key: tuple[int, int] | None = None
        self.parameters: dict[str, str] = {}

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self, deadline: float) -> bool:
        """Read more bytes; False on EOF/reset."""
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return False
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_byte(self) -> bytes:
        """One unframed byte (the answer to SSLRequest/GSSENCRequest); b'' on EOF."""
        deadline = time.monotonic() + self.timeout
        if not self.buf and not self._fill(deadline):
            return b""
        byte, self.buf = self.buf[:1], self.buf[1:]
        return byte

    def read_message(self) -> Msg | None:
        """The next backend message, or None on EOF. socket.timeout if nothing comes."""
        deadline = time.monotonic() + self.timeout
        while True:
            if len(self.buf) >= 5:
                (length,) = struct.unpack("!i", self.buf[1:5])
                if length < 4:
                    raise AssertionError(f"backend sent a bad length {length}")
                if len(self.buf) >= length + 1:
                    msg = Msg(self.buf[:1], self.buf[5 : length + 1])
                    self.buf = self.buf[length + 1 :]
                    return msg
            if not self._fill(deadline):
                return None

    def read_until(self, kinds: Iterable[bytes]) -> list[Msg]:
        """Messages up to and including the first of `kinds`; AssertionError on EOF."""
        wanted = set(kinds)
        out: list[Msg] = []
        while True:
            msg = self.read_message()
            if msg is None:
                raise AssertionError(f"connection closed before {wanted}; got {out}")
            out.append(msg)
            if msg.kind == b"K":
                self.backend_key = struct.unpack("!ii", msg.payload[:8])
            elif msg.kind == b"S":
                name, value, _ = msg.payload.split(b"\x00")
                self.parameters[name.decode()] = value.decode()
            if msg.kind in wanted:
                return out

    def read_to_close(self) -> list[Msg]:
        """Everything the peer sends until it closes (socket.timeout if it never does)."""
        out: list[Msg] = []
        while True:
            msg = self.read_message()
            if msg is None:
                return out
            out.append(msg)

    def login(
        self, user: str = "postgres", database: str = "postgres", version: tuple[int, int] = (3, 0)
    ) -> list[Msg]:
        """Startup for a trust user; returns every message up to ReadyForQuery."""
        self.send(startup_message(user, database, version))
        msgs = self.read_until([b"Z", b"E"])
        if msgs[-1].kind == b"E":
            raise AssertionError(f"login failed: {msgs[-1].fields}")
        return msgs

    def start_tls(self, context: ssl.SSLContext, server_hostname: str = "127.0.0.1") -> None:
        assert not self.buf, "bytes buffered before the TLS handshake"
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
