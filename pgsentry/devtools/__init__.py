"""Developer tools: a throwaway PostgreSQL cluster and a pgsentry subprocess handle.

Used by the test suite, `make demo` and the benchmark. Nothing here is imported by the proxy
itself; this package must not import `pgsentry.proxy` or any other runtime layer.
"""

from pgsentry.devtools.pgcluster import PgBinariesMissing, PgCluster, PgClusterError
from pgsentry.devtools.proxyproc import ProxyProcess, ProxyStartError, free_port

__all__ = [
    "PgBinariesMissing",
    "PgCluster",
    "PgClusterError",
    "ProxyProcess",
    "ProxyStartError",
    "free_port",
]
