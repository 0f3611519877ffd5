"""The authentication exchange, relayed between client and server, and its audit event.

Owns what a session changes in it, SCRAM channel binding across the proxy
(`on_authentication` for the server's offer, `on_password` for the client's answer), and
the connection_auth audit event (`audit_auth`). What the StartupMessage may set is
`login`'s. No I/O: output goes to the session's `to_client` / `to_server`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgsentry.wire import errors as E
from pgsentry.wire import protocol as P

if TYPE_CHECKING:
    from pgsentry.session.session import Session


def audit_auth(session: Session, outcome: str, **extra: object) -> None:
    session.audit.emit(
        "connection_auth",
        session_id=session.session_id,
        user=session.user,
        database=session.database,
        application_name=session.application_name,
        outcome=outcome,
        **extra,
    )


def on_authentication(session: Session, msg: bytes) -> bytes:
    """Relay authentication untouched, except SCRAM channel binding on a plain client leg.

    A server reached over TLS offers SCRAM-SHA-256-PLUS. A client on a plaintext leg must
    not be offered it (libpq rejects the offer), so it is removed; the client then uses
    SCRAM-SHA-256 with gs2 flag 'n', which the server accepts. With TLS on both legs the
    offer passes through: channel binding then succeeds when the proxy presents the
    server's own certificate (see the README).
    """
    if len(msg) < 9:
        raise E.ProtocolError("Authentication message too short")
    if P.INT32.unpack_from(msg, 5)[0] != P.AUTH_SASL:
        return msg
    mechanisms = P.sasl_mechanisms(msg[5:])
    plain = [m for m in mechanisms if not m.endswith("-PLUS")]
    if plain == mechanisms:
        return msg
    if not session.client_tls:
        return P.authentication_sasl(plain)
    session._binding_mismatch = not session.channel_binding_ok
    return msg


def on_password(session: Session, msg: bytes) -> None:
    """SASLInitialResponse et al. pass through, unless channel binding cannot match."""
    if session._binding_mismatch and msg[5:].startswith(b"SCRAM-SHA-256-PLUS\0"):
        session.to_client.append(
            E.fatal(
                E.INVALID_AUTHORIZATION,
                "pgsentry: SCRAM channel binding cannot pass through pgsentry: the client "
                "would bind to pgsentry's certificate, not the database server's. Configure "
                "pgsentry with the server's certificate and key, or connect with "
                "channel_binding=disable.",
            )
        )
        session.terminated = True
        return
    session.to_server.append(msg)
