"""Integration-suite fixture overrides: one proxy per test module (starting a proxy costs about
a second; tests that signal, stop or reconfigure it use `proxy_factory` instead).

Must not: mock anything; every proxy here is the real `pgsentry run` subprocess.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgsentry.devtools import ProxyProcess
from pgsentry.devtools.testkit import ProxyFactory


@pytest.fixture(scope="module")
def proxy(module_proxy_factory: ProxyFactory) -> ProxyProcess:
    """pgsentry in front of `pg` with the allow-all policy, shared by the tests of a module."""
    return module_proxy_factory()


@pytest.fixture(autouse=True)
def _proxies_survive(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, a shared proxy it used must still be running."""
    yield
    if "proxy" in request.fixturenames:
        shared: ProxyProcess = request.getfixturevalue("proxy")
        assert shared.is_alive, f"pgsentry died (exit {shared.returncode}): {shared.stderr}"
