"""Fixtures for the holds tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from holds_support import FakeClock, Recorder, add_approver

from pgsentry.holds import ApproverStore


@pytest.fixture
def audit() -> Recorder:
    return Recorder()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def approvers_file(tmp_path: Path) -> tuple[ApproverStore, dict[str, str]]:
    path = tmp_path / "approvers.yaml"
    tokens = {
        "alice": add_approver(path, "alice", ["dba"], ["alice_db"]),
        "bob": add_approver(path, "bob", ["dba", "oncall"], []),
        "carol": add_approver(path, "carol", ["oncall"], []),
        "mallory": add_approver(path, "mallory", [], ["app_user"]),
    }
    return ApproverStore(path), tokens
