"""MessageWalker: any split of a valid stream decodes the same; bad bytes raise ProtocolError."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgsentry.wire import protocol as P
from pgsentry.wire.errors import ProtocolError
from pgsentry.wire.walker import Item, MessageWalker

INSPECT = frozenset(b"QPSZ")
TYPES = st.sampled_from(sorted(P.FRONTEND_TYPES))
MESSAGES = st.builds(lambda t, body: P.message(bytes([t]), body), TYPES, st.binary(max_size=300))


def walk(chunks: list[bytes], inspect: frozenset[int] = INSPECT) -> tuple[bytes, list[bytes]]:
    w = MessageWalker(inspect, P.FRONTEND_TYPES)
    items: list[Item] = []
    for chunk in chunks:
        items += w.feed(chunk)
    raw = b"".join(bytes(i[1]) if isinstance(i, tuple) else bytes(i) for i in items)
    inspected = [bytes(i[1]) for i in items if isinstance(i, tuple)]
    assert w.at_boundary
    return raw, inspected


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=300)
@given(st.lists(MESSAGES, max_size=12), st.lists(st.integers(0, 10_000), max_size=20))
def test_any_split_decodes_to_the_same_messages(msgs: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(msgs)
    whole = walk([stream])
    assert whole[0] == stream
    assert whole[1] == [m for m in msgs if m[0] in INSPECT]
    assert walk(split(stream, cuts)) == whole


@settings(max_examples=100)
@given(st.lists(MESSAGES, min_size=1, max_size=6))
def test_one_byte_at_a_time(msgs: list[bytes]) -> None:
    stream = b"".join(msgs)
    assert walk([stream[i : i + 1] for i in range(len(stream))]) == walk([stream])


@settings(max_examples=500)
@given(st.binary(max_size=200), st.lists(st.integers(0, 300), max_size=5))
def test_random_bytes_raise_only_protocol_error(data: bytes, cuts: list[int]) -> None:
    w = MessageWalker(INSPECT, P.FRONTEND_TYPES, max_message=1000)
    try:
        for chunk in split(data, cuts):
            w.feed(chunk)
    except ProtocolError:
        pass


def test_uninspected_large_message_streams_without_buffering() -> None:
    big = P.message(b"d", b"x" * 100_000)
    w = MessageWalker(INSPECT, P.FRONTEND_TYPES)
    first = w.feed(big[:10])
    assert b"".join(bytes(i) for i in first if not isinstance(i, tuple)) == big[:10]
    assert not w.at_boundary
    rest = w.feed(big[10:])
    assert b"".join(bytes(i) for i in rest if not isinstance(i, tuple)) == big[10:]
    assert w.at_boundary


@pytest.mark.parametrize(
    "data",
    [
        b"Q\x00\x00\x00\x03",  # length below 4
        b"\x01\x00\x00\x00\x04",  # unknown type
        b"Q\x7f\xff\xff\xff",  # inspected message over the limit
    ],
)
def test_malformed_headers(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        MessageWalker(INSPECT, P.FRONTEND_TYPES, max_message=1 << 20).feed(data)
