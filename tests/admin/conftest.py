"""Fixtures for the admin tests: approvers on disk and a running admin listener."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from admin_support import Admin, Recorder, add_approver, start_admin_listener

from pgsentry.holds import ApproverStore, HoldRegistry


@pytest.fixture
def audit() -> Recorder:
    return Recorder()


@pytest.fixture
async def admin(tmp_path: Path, audit: Recorder) -> AsyncIterator[Admin]:
    path = tmp_path / "approvers.yaml"
    tokens = {
        "alice": add_approver(path, "alice", ["dba"], ["alice_db"]),
        "bob": add_approver(path, "bob", ["dba"], []),
        "carol": add_approver(path, "carol", ["oncall"], []),
        "mallory": add_approver(path, "mallory", ["dba"], ["app_user"]),
    }
    store = ApproverStore(path)
    registry = HoldRegistry(audit=audit, approvers=store)
    listener = await start_admin_listener(registry, tokens, store)
    yield listener
    registry.close()
    await listener.runner.cleanup()
