"""Standard Webhooks signatures (https://www.standardwebhooks.com/), stdlib hmac only.

Owns signing outbound webhook requests and the matching verification that receivers (and
the tests) can use. Must not do I/O.

A secret is written `whsec_<base64 of the key bytes>`. A request carries three headers:
`webhook-id` (the same on every retry of one message), `webhook-timestamp` (integer Unix
seconds of this attempt) and `webhook-signature`: `v1,` + base64(HMAC-SHA256(key,
"{id}.{timestamp}.{body}")), possibly several space-separated during a key rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookSecretError(ValueError):
    """A webhook secret is not `whsec_` followed by base64."""


def generate_secret() -> str:
    """A new secret: 32 random bytes, in the `whsec_<base64>` form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The key bytes of a `whsec_<base64>` secret (the prefix is optional)."""
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookSecretError("webhook secret must be 'whsec_' followed by base64") from exc
    if len(key) < 16:
        raise WebhookSecretError("webhook secret must hold at least 16 bytes of key")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one attempt."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(
    key: bytes, msg_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, msg_id, timestamp, body),
    }


def verify(
    key: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when `headers` carry a valid, fresh signature of `body`.

    Refuses a timestamp more than `tolerance` seconds from `now` (replay protection; a
    receiver should also remember the `webhook-id`s it has seen within that window).
    """
    msg_id = headers.get("webhook-id")
    ts_text = headers.get("webhook-timestamp")
    sig_header = headers.get("webhook-signature")
    if not msg_id or not ts_text or not sig_header:
        return False
    try:
        timestamp = int(ts_text)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign(key, msg_id, timestamp, body).encode()
    ok = False
    for candidate in sig_header.split():
        if hmac.compare_digest(candidate.encode(), expected):
            ok = True
    return ok
