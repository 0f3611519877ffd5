"""Values that cross the policy boundary: who is asking, and what was decided.

Owns `Principal`, `Decision`, `HoldSpec`. Pure values, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(str, Enum):  # noqa: UP042 (str() / format() stay as they are)
    ALLOW = "allow"
    DENY = "deny"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking, as the proxy knows it from the startup packet and the socket."""

    user: str
    database: str
    application_name: str = ""
    client_addr: str | None = None  # None for a unix-socket client
    in_transaction: bool = False  # from the last ReadyForQuery ('T' or 'E')


@dataclass(frozen=True, slots=True)
class HoldSpec:
    """How a held statement gets released (issue #4 carries it out)."""

    timeout_seconds: float = 300.0
    approvals: int = 1
    approvers: tuple[str, ...] = ()  # named approvers allowed; empty = anyone
    groups: tuple[str, ...] = ()  # approver groups allowed; empty = any
    allow_self_approval: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one SQL text (all of its statements together).

    `action` is what the proxy enforces. In shadow mode `action` is ALLOW and
    `would` names what would have happened (set only when it differs from `action`),
    `would_rule` the rule that would have decided. `cacheable` is False when the result
    depended on the clock or the transaction state, so it must not be reused. A cacheable
    decision is valid for the same text, the same user / database / application_name /
    client address, and the same policy generation.
    """

    action: Action
    rule: str | None = None
    message: str | None = None
    reason: str = ""
    would: Action | None = None
    hold: HoldSpec | None = None
    cacheable: bool = True
    would_rule: str | None = None  # the rule behind `would`; None when `would` is None


ALLOW = Decision(Action.ALLOW, reason="default")
