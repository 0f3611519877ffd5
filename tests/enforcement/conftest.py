"""Fixtures for the enforcement tests: the fixture database and a proxy on the SHIPPED policies.

Owns: `fixture_db` (the schema both corpora assume, created directly on the cluster once per
module) and `shipped_proxy` (one real pgsentry per module, started with `policies/`).
Must not: start a proxy per corpus entry, or change anything through the proxy itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgsentry.devtools import PgCluster, ProxyProcess
from pgsentry.devtools.testkit import ProxyFactory

from .support import SHIPPED_POLICIES, create_fixture_database, drop_fixture_databases


@pytest.fixture(scope="module")
def fixture_db(pg: PgCluster) -> Iterator[PgCluster]:
    create_fixture_database(pg)
    yield pg
    drop_fixture_databases(pg)


@pytest.fixture(scope="module")
def shipped_proxy(module_proxy_factory: ProxyFactory, fixture_db: PgCluster) -> ProxyProcess:
    return module_proxy_factory(policies=SHIPPED_POLICIES)
