"""Fixtures for the end-to-end hold tests: approvers made once per run with the real CLI,
and per module a `Stage` (pgsentry with the hold policy, approvers file and a
signature-verifying webhook receiver) in front of the session's cluster.

Must not start anything in-process that the tests are meant to observe from outside.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pgsentry.devtools import PgCluster
from pgsentry.devtools.testkit import ProxyFactory

from .e2e_support import Stage, add_approvers, start_stage


@pytest.fixture(scope="session")
def approvers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("approvers") / "approvers.yaml"
    tokens = add_approvers(path)
    assert path.stat().st_mode & 0o077 == 0, "the approvers file must be private (0600)"
    return path, tokens


@pytest.fixture(scope="module")
def stage(
    pg: PgCluster,
    module_proxy_factory: ProxyFactory,
    approvers: tuple[Path, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stage]:
    pg.psql(
        "DO $$ BEGIN CREATE ROLE alice_db LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    path, tokens = approvers
    st = start_stage(pg, module_proxy_factory, tmp_path_factory.mktemp("stage"), tokens, path)
    try:
        yield st
    finally:
        st.receiver.stop()
