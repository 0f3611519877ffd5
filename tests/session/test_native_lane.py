"""The native Lane (session/_records_lane.c) behaves as the connection's Python path it replaces.

Two sessions get the same client and server bytes: one through the Python path (what
`ClientConnection` does without the Lane: `Session.client_data` / `server_data`, then the
session's outputs), one through a Lane whose slow paths are that same Python path. What each
wrote to each side, what it audited, and its state must be the same.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgsentry.analysis import analyze
from pgsentry.audit.log import MemoryAuditLog
from pgsentry.policy import load_policy
from pgsentry.session import records as R
from pgsentry.session.decider import PolicyHolder, SessionDecider
from pgsentry.session.session import Session
from pgsentry.wire import protocol as P
from pgsentry.wire.startup import StartupMessage

POLICY = load_policy(Path(__file__).resolve().parents[2] / "policies")
VOLATILE = ("ts", "started_at", "duration_ms")  # clocks: differ between any two runs


def test_the_lane_is_built() -> None:
    # make test installs with a C compiler present; a silent fallback would hide a slow path
    assert R.Lane is not None


class PythonPath:
    """The connection's path without a Lane: feed the session, collect what it sends."""

    def __init__(self) -> None:
        self.audit = MemoryAuditLog()
        self.session = Session(
            session_id="s-1",
            decider=SessionDecider(PolicyHolder(POLICY), analyze),
            audit=self.audit,
            proxy_key=(1, 2),
            client_addr="127.0.0.1",
        )
        self.session._marker_base = "m" * 12  # refusal markers: random per session
        self.upstream: list[bytes] = []
        self.client: list[bytes] = []
        self.session.startup(StartupMessage(3, 0, {"user": "app", "database": "db"}))
        self.flush()

    def authenticate(self) -> PythonPath:
        self.server_data(AUTHENTICATION_OK)
        return self

    def flush(self) -> None:
        s = self.session
        self.upstream += [bytes(b) for b in s.to_server]
        self.client += [bytes(b) for b in s.to_client]
        s.to_server.clear()
        s.to_client.clear()

    def client_data(self, data: bytes) -> None:
        self.session.client_data(data)
        self.flush()

    def server_data(self, data: bytes, done: int | None = None) -> None:
        self.session.server_data(data, done)
        self.flush()

    def state(self) -> dict[str, Any]:
        s, inflight = self.session, self.session._inflight
        records = [{k: v for k, v in r.items() if k not in VOLATILE} for r in self.audit.records]
        return {
            "upstream": b"".join(self.upstream),
            "client": b"".join(self.client),
            "status": s.status,
            "bytes": (s.bytes_from_client, s.bytes_from_server),
            "batches": (inflight.sent_batches, inflight.done_batches, len(inflight.queue)),
            "hold": s.hold is not None,
            "portals": dict(s._portals),
            "audit": records,
        }


class LanePath(PythonPath):
    """The same, through a Lane whose slow paths are the Python path above."""

    def __init__(self) -> None:
        super().__init__()
        self.relane()

    def relane(self, **overrides: Any) -> None:
        """A new Lane: the Python path and this path's outputs, but for `overrides`."""
        arguments: dict[str, Any] = {
            "write_server": self.upstream.append,
            "write_client": self.client.append,
            "client_slow": super().client_data,
            "server_slow": super().server_data,
            "after_client": self.flush,
            "audit_lines": self.audit.lines,
            "congested_above": self.audit.congested_above,
        }
        self.lane = self.session.lane(**(arguments | overrides))

    def client_data(self, data: bytes) -> None:
        self.lane.client_data(data)

    def server_data(self, data: bytes, done: int | None = None) -> None:
        assert done is None
        self.lane.server_data(data)


PARAMETER = P.message(b"S", b"application_name\0x\0")
PARAMETER_DATE = P.message(b"S", b"DateStyle\0ISO, MDY\0")


def _bind_execute_sync(name: bytes, value: int) -> bytes:
    param = b"%d" % value
    bind = P.message(
        b"B", b"\0" + name + b"\0\0\0\0\1" + struct.pack("!i", len(param)) + param + b"\0\0"
    )
    return bind + P.message(b"E", b"\0\0\0\0\0") + P.message(b"S", b"")


def _row_response(tag: bytes, status: bytes) -> bytes:
    return (
        P.message(b"T", b"\0\1a\0" + b"\0" * 18)
        + P.message(b"D", b"\0\1\0\0\0\1" + b"7")
        + P.message(b"C", tag + b"\0")
        + P.ready_for_query(status)
    )


AUTHENTICATION_OK = P.message(b"R", P.INT32.pack(0)) + PARAMETER_DATE + P.ready_for_query(b"I")
ERROR = P.message(b"E", b"SERROR\0C42P01\0Mno such table\0\0") + P.ready_for_query(b"I")

# What a client sends, and what a server answers (each answer fits the statement or not:
# the two paths must agree either way).
CLIENT = {
    "select": lambda v: P.query(f"SELECT a FROM t WHERE id = {v};"),
    "select-other": lambda v: P.query(f"SELECT b, c FROM u WHERE k = '{v}'"),
    "begin": lambda v: P.query("BEGIN"),
    "commit": lambda v: P.query("COMMIT"),
    "drop": lambda v: P.query(f"DROP TABLE t{v}"),
    "delete-all": lambda v: P.query("DELETE FROM t"),
    "set": lambda v: P.query(f"SET application_name = 'a{v}'"),
    "empty": lambda v: P.query(""),
    "parse": lambda v: (
        P.message(b"P", b"st\0SELECT a FROM t WHERE id = $1\0\0\0") + P.message(b"S", b"")
    ),
    "execute": lambda v: _bind_execute_sync(b"st", v),
    "execute-unknown": lambda v: _bind_execute_sync(b"nope", v),
    "two-queries": lambda v: P.query(f"SELECT {v}") + P.query("SELECT 2"),
    "terminate": lambda v: P.message(b"X", b""),
}
SERVER = {
    "rows-idle": _row_response(b"SELECT 1", b"I"),
    "rows-in-tx": _row_response(b"SELECT 1", b"T"),
    "begin": P.message(b"C", b"BEGIN\0") + P.ready_for_query(b"T"),
    "commit": P.message(b"C", b"COMMIT\0") + P.ready_for_query(b"I"),
    "parameter-first": PARAMETER + P.message(b"C", b"SET\0") + P.ready_for_query(b"I"),
    "parameter-after": P.message(b"C", b"SET\0") + PARAMETER + P.ready_for_query(b"I"),
    "error": ERROR,
    "parse-complete": P.message(b"1", b"") + P.ready_for_query(b"I"),
    "bind-execute": P.message(b"2", b"")
    + P.message(b"D", b"\0\1\0\0\0\1" + b"7")
    + P.message(b"C", b"SELECT 1\0")
    + P.ready_for_query(b"I"),
    "empty": P.message(b"I", b"") + P.ready_for_query(b"I"),
}
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("client"), st.sampled_from(sorted(CLIENT)), st.integers(0, 10**6)),
        st.tuples(st.just("server"), st.sampled_from(sorted(SERVER)), st.integers(0, 60)),
    ),
    max_size=14,
)


def _run(path: PythonPath, steps: list[tuple[str, str, int]]) -> dict[str, Any]:
    path.authenticate()
    for side, kind, value in steps:
        if side == "client":
            path.client_data(CLIENT[kind](value))
            continue
        data = SERVER[kind]
        cut = value % (len(data) + 1)
        for chunk in (data[:cut], data[cut:]) if 0 < cut < len(data) else (data,):
            path.server_data(chunk)
    try:
        return path.state()
    finally:
        path.audit.close()


@settings(max_examples=1500, deadline=None)
@given(STEPS)
def test_lane_equals_the_python_path(steps: list[tuple[str, str, int]]) -> None:
    assert _run(LanePath(), steps) == _run(PythonPath(), steps)


def test_lane_forwards_a_known_query_itself() -> None:
    path = LanePath().authenticate()
    calls: list[str] = []
    path.relane(
        client_slow=lambda data: calls.append("client") or PythonPath.client_data(path, data),
        server_slow=lambda data, done=None: (
            calls.append("server") or PythonPath.server_data(path, data, done)
        ),
        after_client=lambda: calls.append("after"),
    )
    for value in (1, 2):
        path.client_data(CLIENT["select"](value))
        path.server_data(SERVER["rows-idle"])
    # the first is a new shape, judged on the Python path (which also builds the session's
    # audit member at its first record); the second is the Lane's own, both ways
    assert calls == ["client", "server"]
    assert path.upstream[-1] == CLIENT["select"](2) and path.client[-1] == SERVER["rows-idle"]
    assert path.audit.events("statement")[-1]["text"] == "SELECT a FROM t WHERE id = 2;"
    path.lane.detach()
    path.client_data(CLIENT["select"](3))
    path.server_data(SERVER["rows-idle"])
    assert calls == ["client", "server", "client", "server"] and path.lane.detached


def test_lane_never_forwards_what_policy_stops() -> None:
    path = LanePath().authenticate()
    for _ in range(3):
        path.client_data(CLIENT["drop"](1))
        if path.session.hold is not None:
            break
    assert b"DROP" not in b"".join(path.upstream)


def test_lane_hands_a_congested_audit_log_to_the_connection() -> None:
    path = LanePath().authenticate()
    flushes: list[int] = []
    path.relane(
        after_client=lambda: flushes.append(1),
        audit_lines=[None] * 5,  # as if five lines waited for the writer
        congested_above=4,
    )
    path.client_data(CLIENT["select"](1))
    path.server_data(SERVER["rows-idle"])
    path.client_data(CLIENT["select"](2))  # the Lane's own: then it asks the connection
    assert flushes == [1]


def test_lane_rejects_a_session_of_another_class() -> None:
    class Other(Session):
        __slots__ = ()

    path = PythonPath()
    other = Other(
        session_id="s-2",
        decider=path.session.decider,
        audit=path.audit,
        proxy_key=(1, 2),
        client_addr=None,
    )
    with pytest.raises(TypeError):
        other.lane(
            write_server=print,
            write_client=print,
            client_slow=print,
            server_slow=print,
            after_client=print,
            audit_lines=[],
            congested_above=0,
        )


def test_lane_runs_a_prepared_statement_itself() -> None:
    path = LanePath().authenticate()
    slow: list[bytes] = []
    path.relane(client_slow=lambda data: slow.append(data) or PythonPath.client_data(path, data))
    path.client_data(CLIENT["parse"](0))  # judged at Parse, on the Python path
    path.server_data(SERVER["parse-complete"])
    path.client_data(CLIENT["execute"](42))
    path.server_data(SERVER["bind-execute"])
    assert slow == [CLIENT["parse"](0)]
    assert path.upstream[-1] == CLIENT["execute"](42)
    statement = path.audit.events("statement")[-1]
    assert (statement["protocol"], statement["rows"]) == ("extended", 1)
