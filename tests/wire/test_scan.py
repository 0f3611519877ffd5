"""The native header walker and its Python twin agree on every input."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgsentry.wire import protocol as P
from pgsentry.wire import scan as S
from pgsentry.wire import walker as W

TABLE = S.type_table(P.BACKEND_TYPES, b"CZE")
MESSAGES = st.builds(
    lambda t, body: P.message(bytes([t]), body),
    st.sampled_from(sorted(P.BACKEND_TYPES)),
    st.binary(max_size=40),
)


def test_native_scan_is_built() -> None:
    # make test installs with a C compiler present; a silent fallback would hide a slow path
    assert S.NATIVE


@settings(max_examples=1000)
@given(st.binary(max_size=120), st.integers(0, 130))
def test_native_equals_python_on_random_bytes(data: bytes, pos: int) -> None:
    assert S.scan(data, pos, TABLE) == S.py_scan(data, pos, TABLE)


@settings(max_examples=500)
@given(st.lists(MESSAGES, max_size=8), st.integers(0, 400))
def test_native_equals_python_on_message_streams(msgs: list[bytes], cut: int) -> None:
    data = b"".join(msgs)
    data = data[: cut % (len(data) + 1)]
    assert S.scan(data, 0, TABLE) == S.py_scan(data, 0, TABLE)


def test_scan_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        S.scan(b"", 0, b"short")


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(MESSAGES, max_size=8), st.lists(st.integers(0, 500), max_size=6))
def test_walker_with_python_twin(
    monkeypatch: pytest.MonkeyPatch, msgs: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(msgs)
    native = W.MessageWalker(frozenset(b"CZ"), P.BACKEND_TYPES).feed(stream)
    with monkeypatch.context() as m:
        m.setattr(W, "scan", S.py_scan)
        walker = W.MessageWalker(frozenset(b"CZ"), P.BACKEND_TYPES)
        points = sorted({c % (len(stream) + 1) for c in cuts})
        edges = [0, *points, len(stream)]
        twin = [item for a, b in itertools.pairwise(edges) for item in walker.feed(stream[a:b])]

    def flat(items: list[W.Item]) -> bytes:
        return b"".join(bytes(i[1]) if isinstance(i, tuple) else bytes(i) for i in items)

    assert flat(native) == flat(twin) == stream
