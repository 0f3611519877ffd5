"""StartupDecoder: startup-phase packets from arbitrary chunks; bad packets are ProtocolError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgsentry.wire import protocol as P
from pgsentry.wire.errors import ProtocolError
from pgsentry.wire.startup import (
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupDecoder,
    StartupMessage,
)


def decode_all(chunks: list[bytes]) -> list[object]:
    d = StartupDecoder()
    out: list[object] = []
    for chunk in chunks:
        d.feed(chunk)
        while (packet := d.next_packet()) is not None:
            out.append(packet)
    return out


def test_each_packet_kind() -> None:
    stream = (
        P.ssl_request()
        + P.INT32.pack(8)
        + P.INT32.pack(P.GSSENC_REQUEST_CODE)
        + P.cancel_request(42, 7)
        + P.startup_message({"user": "u", "database": "d"})
    )
    packets = decode_all([stream])
    assert packets[:3] == [SSLRequest(), GSSENCRequest(), CancelRequest(42, 7)]
    assert isinstance(packets[3], StartupMessage)
    assert packets[3].params == {"user": "u", "database": "d"}
    assert decode_all([stream[i : i + 1] for i in range(len(stream))]) == packets


def test_protocol_3_2_and_options() -> None:
    body = P.INT32.pack((3 << 16) | 2) + b"user\0u\0_pq_.x\0y\0\0"
    msg = decode_all([P.INT32.pack(len(body) + 4) + body])[0]
    assert isinstance(msg, StartupMessage)
    assert (msg.major, msg.minor, msg.protocol_options) == (3, 2, ["_pq_.x"])


@pytest.mark.parametrize(
    "data",
    [
        P.INT32.pack(4) + b"\0\0\0\0",  # length too small
        P.INT32.pack(1_000_000),  # oversize
        P.INT32.pack(-5),  # negative
        P.INT32.pack(12) + P.INT32.pack(2 << 16) + b"a\0\0\0",  # protocol 2
        P.INT32.pack(13) + P.INT32.pack(P.PROTOCOL_3_0) + b"user\0",  # no terminator
        P.INT32.pack(9) + P.INT32.pack(P.PROTOCOL_3_0) + b"\0",  # no user
        b"GET / HTTP/1.1\r\n\r\n",  # garbage before startup
    ],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_all([data])


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_all([data])
