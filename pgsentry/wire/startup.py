"""Decoder for the startup phase: SSLRequest, GSSENCRequest, CancelRequest, StartupMessage.

Owns the untyped, length-prefixed packets a client sends before its first typed
message, and `StartupMessage.settings()`: the run-time parameters a StartupMessage sets
(the server applies every key but user, database, replication and options as a setting,
and reads options as command-line switches). Sans-I/O: feed bytes, take packets; raises
only `ProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgsentry.wire.errors import ProtocolError
from pgsentry.wire.protocol import (
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    INT32,
    MAX_STARTUP_PACKET,
    SSL_REQUEST_CODE,
    UINT32,
)


@dataclass(frozen=True, slots=True)
class SSLRequest:
    pass


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    pass


@dataclass(frozen=True, slots=True)
class CancelRequest:
    pid: int
    secret: int


@dataclass(frozen=True, slots=True)
class StartupMessage:
    major: int
    minor: int
    params: dict[str, str]

    @property
    def protocol_options(self) -> list[str]:
        """`_pq_.` protocol extension options the client asked for."""
        return [k for k in self.params if k.startswith("_pq_.")]

    def settings(self) -> list[tuple[str, str]]:
        """(name, value) of every setting this StartupMessage makes, in the server's order:
        the parameters, then `-c name=value` / `--name=value` in options. Raises
        ProtocolError for any other switch in options (the server has dozens, some of
        them settings, e.g. -O for allow_system_table_mods): pgsentry does not pass what
        it cannot judge."""
        out = [
            (k.lower(), v)
            for k, v in self.params.items()
            if k not in _NOT_SETTINGS and not k.startswith("_pq_.")
        ]
        args = split_options(self.params.get("options", ""))
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "-c" and i + 1 < len(args):
                i += 1
                setting = args[i]
            elif len(arg) > 2 and arg[:2] in ("--", "-c"):
                setting = arg[2:]
            else:
                raise ProtocolError(
                    f"pgsentry passes only -c name=value and --name=value in options, not {arg!r}",
                    "0A000",
                )
            name, eq, value = setting.partition("=")
            if not eq or not name:
                raise ProtocolError(f"-c {setting} requires a value", "42601")
            out.append((name.replace("-", "_").lower(), value))
            i += 1
        return out


_NOT_SETTINGS = frozenset({"user", "database", "replication", "options"})


def split_options(options: str) -> list[str]:
    """The server's pg_split_opts: words split at white space, a backslash keeps the next
    character (a space too) in the word."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    i = 0
    while i < len(options):
        ch = options[i]
        if ch in " \t\n\v\f\r":  # C isspace()
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        else:
            if ch == "\\":
                i += 1
                if i == len(options):
                    break  # a lone trailing backslash escapes nothing: dropped
                ch = options[i]
            word.append(ch)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(word))
    return words


StartupPacket = SSLRequest | GSSENCRequest | CancelRequest | StartupMessage


def _decode(body: bytes) -> StartupPacket:
    if len(body) < 4:
        raise ProtocolError("startup packet too short")
    code = INT32.unpack_from(body, 0)[0]
    if code == SSL_REQUEST_CODE and len(body) == 4:
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE and len(body) == 4:
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        if len(body) != 12:
            raise ProtocolError("CancelRequest with a bad length")
        return CancelRequest(UINT32.unpack_from(body, 4)[0], UINT32.unpack_from(body, 8)[0])
    major, minor = code >> 16, code & 0xFFFF
    if major != 3:
        raise ProtocolError(
            f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0",
            "0A000",
        )
    if body[-1] != 0:
        raise ProtocolError("invalid startup packet layout: expected terminator as last byte")
    params: dict[str, str] = {}
    parts = body[4:-1].split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    if len(parts) % 2:
        raise ProtocolError("invalid startup packet layout: odd number of strings")
    for i in range(0, len(parts), 2):
        key = parts[i].decode("utf-8", "surrogateescape")
        if not key:
            raise ProtocolError("invalid startup packet layout: empty parameter name")
        params[key] = parts[i + 1].decode("utf-8", "surrogateescape")
    if "user" not in params:
        raise ProtocolError("no PostgreSQL user name specified in startup packet", "28000")
    return StartupMessage(major, minor, params)


class StartupDecoder:
    """Buffers bytes until one whole startup-phase packet is available."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > MAX_STARTUP_PACKET + 4:
            self._check_length()

    def _check_length(self) -> int | None:
        if len(self._buf) < 4:
            return None
        length = INT32.unpack_from(self._buf, 0)[0]
        if length < 8 or length > MAX_STARTUP_PACKET:
            raise ProtocolError(f"invalid length of startup packet: {length}")
        return int(length)

    def next_packet(self) -> StartupPacket | None:
        """The next whole packet, or None when more bytes are needed."""
        length = self._check_length()
        if length is None or len(self._buf) < length:
            return None
        body = bytes(self._buf[4:length])
        del self._buf[:length]
        return _decode(body)

    def take_remaining(self) -> bytes:
        """Bytes received after the last packet (e.g. typed messages, or plaintext after SSL)."""
        out = bytes(self._buf)
        self._buf.clear()
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)
