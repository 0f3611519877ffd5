"""Opening connections to the upstream PostgreSQL server (TCP or unix socket, TLS modes).

Owns the SSLRequest exchange with the server, the TLS handshake for sslmode
disable / prefer / require / verify-full, and forwarding a CancelRequest.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

from pgsentry.wire import protocol as P


class UpstreamError(Exception):
    """The upstream could not be reached or refused TLS when it was required."""


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    host: str
    port: int
    sslmode: str = "prefer"
    ssl_context: ssl.SSLContext | None = None
    connect_timeout: float = 5.0

    @property
    def display(self) -> str:
        return f"{self.host}:{self.port}"


async def open_upstream(
    target: UpstreamTarget,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
    """Connect and negotiate TLS. Returns (reader, writer, tls_in_use)."""
    try:
        async with asyncio.timeout(target.connect_timeout):
            if target.host.startswith("/"):
                path = f"{target.host}/.s.PGSQL.{target.port}"
                reader, writer = await asyncio.open_unix_connection(path)
            else:
                reader, writer = await asyncio.open_connection(target.host, target.port)
            if target.sslmode == "disable" or target.ssl_context is None:
                return reader, writer, False
            writer.write(P.ssl_request())
            answer = await reader.readexactly(1)
            if answer == b"S":
                server_hostname = None if target.host.startswith("/") else target.host
                await writer.start_tls(target.ssl_context, server_hostname=server_hostname)
                return reader, writer, True
            if answer != b"N":
                writer.close()
                raise UpstreamError("upstream answered SSLRequest with an unexpected byte")
            if target.sslmode in ("require", "verify-ca", "verify-full"):
                writer.close()
                raise UpstreamError(f"upstream refused TLS but sslmode={target.sslmode}")
            return reader, writer, False
    except TimeoutError as exc:
        raise UpstreamError(
            f"timeout connecting to upstream {target.display} after {target.connect_timeout}s"
        ) from exc
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
        raise UpstreamError(f"could not connect to upstream {target.display}: {exc}") from exc


async def send_cancel(target: UpstreamTarget, pid: int, secret: int) -> None:
    """Send a CancelRequest for backend `pid` to the upstream server, and wait until the
    server closes the connection: it does so once it has signalled the backend."""
    reader, writer, _ = await open_upstream(target)
    try:
        writer.write(P.cancel_request(pid, secret))
        await writer.drain()
        with contextlib.suppress(OSError, ssl.SSLError):
            await asyncio.wait_for(reader.read(), target.connect_timeout)
    except TimeoutError:
        pass  # the server keeps it open: the request was delivered all the same
    finally:
        writer.close()
