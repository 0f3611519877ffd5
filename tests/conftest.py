"""Shared fixtures: a real throwaway PostgreSQL cluster and the real pgsentry as a subprocess.

Owns: the session-scoped `pg` cluster (TLS on, test roles scram_user/md5_user), the `certs`
used by both legs, and `proxy_factory` / `proxy` / `module_proxy_factory`.
Must not: mock PostgreSQL or the proxy, or skip when the server binaries are missing (the
`pg` fixture fails with the one-line install hint instead).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgsentry.devtools import PgBinariesMissing, PgCluster, ProxyProcess
from pgsentry.devtools.testkit import Certs, ProxyFactory, make_certs

TESTS_DIR = Path(__file__).resolve().parent
ALLOW_ALL_POLICY = TESTS_DIR / "policies" / "allow_all.yaml"


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def pg(certs: Certs) -> Iterator[PgCluster]:
    """The session's PostgreSQL (ssl=on, so clients and the proxy may use TLS or not)."""
    workdir = Path(tempfile.mkdtemp(prefix="pgsentry-pg-"))
    workdir.chmod(0o755)  # the server runs as an unprivileged OS user when we are root
    try:
        cluster = PgCluster(workdir / "cluster", ssl_cert=certs.upstream_pair)
    except PgBinariesMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _teardown(factory: ProxyFactory) -> None:
    for report in factory.stop_all():
        print(report)  # shown by pytest for failing tests ("Captured stdout teardown")


@pytest.fixture
def proxy_factory(pg: PgCluster, tmp_path: Path) -> Iterator[ProxyFactory]:
    """Call it with ProxyProcess keyword arguments; every proxy is stopped after the test."""
    factory = ProxyFactory(pg, tmp_path, policies=ALLOW_ALL_POLICY)
    yield factory
    _teardown(factory)


@pytest.fixture(scope="module")
def module_proxy_factory(
    pg: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyFactory]:
    factory = ProxyFactory(pg, tmp_path_factory.mktemp("proxies"), policies=ALLOW_ALL_POLICY)
    yield factory
    _teardown(factory)


@pytest.fixture
def proxy(proxy_factory: ProxyFactory) -> ProxyProcess:
    """pgsentry in front of `pg` with the allow-all policy, no TLS on either leg."""
    return proxy_factory()
