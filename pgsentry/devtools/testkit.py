"""Building blocks for the test fixtures (and the demo): throwaway certificates and a factory
of pgsentry subprocesses in front of a PgCluster.

Must not import pytest (the fixtures in tests/conftest.py wrap these) or any runtime layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgsentry.devtools.pgcluster import PgCluster
from pgsentry.devtools.proxyproc import ProxyProcess


@dataclass(frozen=True)
class Certs:
    """A private CA and two distinct server certificates, both valid for 127.0.0.1/localhost.

    `cert`/`key` are for pgsentry's client-facing TLS, `upstream_cert`/`upstream_key` for
    PostgreSQL. They must differ: SCRAM channel binding (tls-server-end-point) hashes the
    server certificate, so one shared certificate would hide channel-binding bugs.
    """

    ca: Path
    cert: Path
    key: Path
    upstream_cert: Path
    upstream_key: Path

    @property
    def pair(self) -> tuple[Path, Path]:
        return (self.cert, self.key)

    @property
    def upstream_pair(self) -> tuple[Path, Path]:
        return (self.upstream_cert, self.upstream_key)


def make_certs(directory: Path) -> Certs:
    """Write ca.pem and two cert-chain/key pairs into `directory` (needs `trustme`)."""
    import trustme  # test dependency, imported only when certificates are wanted

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    paths = Certs(
        ca=directory / "ca.pem",
        cert=directory / "proxy.pem",
        key=directory / "proxy.key",
        upstream_cert=directory / "postgres.pem",
        upstream_key=directory / "postgres.key",
    )
    ca.cert_pem.write_to_path(str(paths.ca))
    for cert_path, key_path in (paths.pair, paths.upstream_pair):
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        leaf.private_key_pem.write_to_path(str(key_path))
        key_path.chmod(0o600)
        cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    return paths


class ProxyFactory:
    """Starts pgsentry subprocesses in front of `pg`; stop_all() ends every one it started."""

    def __init__(self, pg: PgCluster, workdir: Path, policies: Path | None = None) -> None:
        self.pg = pg
        self.workdir = workdir
        self.policies = policies
        self.started: list[ProxyProcess] = []

    def __call__(self, **kwargs: Any) -> ProxyProcess:
        """Keyword arguments go to ProxyProcess (upstream, tls, upstream_sslmode, ...).

        `start=False` returns the handle unstarted; `require_ready=False` waits only for the
        proxy port to accept connections (e.g. when the upstream is down on purpose).
        """
        start = kwargs.pop("start", True)
        require_ready = kwargs.pop("require_ready", True)
        kwargs.setdefault("upstream", f"postgresql://{self.pg.host}:{self.pg.port}")
        kwargs.setdefault("policies", self.policies)
        kwargs.setdefault("workdir", self.workdir / f"proxy{len(self.started)}")
        proxy = ProxyProcess(**kwargs)
        self.started.append(proxy)
        return proxy.start(require_ready=require_ready) if start else proxy

    def stop_all(self) -> list[str]:
        """Stop every proxy; returns one report line plus stderr tail per proxy."""
        reports: list[str] = []
        for proxy in self.started:
            if proxy.proc is None:
                continue
            alive = proxy.is_alive
            code = proxy.stop()
            tail = "\n".join(proxy.stderr.splitlines()[-30:])
            reports.append(
                f"[pgsentry pid {proxy.pid} alive_at_teardown={alive} exit={code}]\n{tail}"
            )
        return reports
