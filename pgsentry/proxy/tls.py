"""TLS contexts for both legs, built with the stdlib `ssl` module.

Owns turning settings (certificate files, sslmode, CA file) into SSLContexts.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The context the proxy presents to clients that send SSLRequest."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def upstream_context(sslmode: str, ca_file: Path | None) -> ssl.SSLContext | None:
    """The context for the upstream leg, per libpq's sslmode semantics."""
    if sslmode == "disable":
        return None
    if sslmode in ("verify-ca", "verify-full"):
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None
        )
        ctx.check_hostname = sslmode == "verify-full"
        return ctx
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def certificate_der(cert_file: Path) -> bytes:
    """The first certificate of a PEM file, DER-encoded (what channel binding hashes)."""
    pem = cert_file.read_text()
    end = "-----END CERTIFICATE-----"
    first = pem[: pem.index(end) + len(end)] + "\n"
    return ssl.PEM_cert_to_DER_cert(first)
