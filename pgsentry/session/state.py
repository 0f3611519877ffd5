"""The small types the parts of a `Session` share (see session.py for the whole picture).

Owns `Phase` (authenticating / ready), `HoldRequest` (what the session stopped at, for the
proxy to carry out) and `Audit` (what the session needs of the audit log). Values only:
no behaviour, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from pgsentry.session.decider import Judgement, Verdict


class Audit(Protocol):
    def emit(self, event: str, /, **fields: object) -> None: ...

    def emit_line(self, line: bytes) -> None: ...


class Phase(Enum):
    AUTHENTICATING = "authenticating"
    READY = "ready"


@dataclass(slots=True)
class HoldRequest:
    """The session stopped at a statement: policy holds it (the proxy asks the approvers,
    then calls `resolve_hold`), or it is too long to judge on the event loop (`judge` set:
    the proxy decides it apart, then calls `resolve_judgement`)."""

    sql: str
    verdict: Verdict | None
    protocol: str
    message: bytes = field(repr=False, default=b"")
    judge: Judgement | None = field(repr=False, default=None)
