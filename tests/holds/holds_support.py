"""Helpers shared by the holds tests: an audit recorder, a fake clock, approvers on disk."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from pgsentry.holds import approvers_add_command
from pgsentry.policy.decision import Principal

REQUESTER = Principal("app_user", "prod", "psql", "10.0.0.5")


@dataclass
class Recorder:
    """Implements the AuditEmitter protocol by keeping every record."""

    records: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    def emit(self, event: str, /, **fields: object) -> None:
        self.records.append((event, fields))

    def events(self, hold_id: str) -> list[str]:
        return [e for e, f in self.records if f.get("hold_id") == hold_id]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def add_approver(path: Path, name: str, groups: list[str], db_users: list[str]) -> str:
    """Add an approver with the real command; return the token it printed."""
    out = io.StringIO()
    assert approvers_add_command(path, name, groups, db_users, out) == 0
    return out.getvalue().strip().splitlines()[-1]
