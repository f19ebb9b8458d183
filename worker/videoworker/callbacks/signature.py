"""OpenRouter's callback signature: ``X-OpenRouter-Signature: t=<unix s>,v1=<hex HMAC-SHA256>``.

The signed message is the timestamp, a comma, then the raw body bytes, keyed with the
workspace's signing secret as UTF-8. The check runs on the bytes as received (parsing
and re-serialising would change them), compares in constant time, and refuses a
timestamp more than ``tolerance`` seconds away from now in either direction, so a
captured delivery cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-OpenRouter-Signature"
IDEMPOTENCY_HEADER = "X-OpenRouter-Idempotency-Key"
TOLERANCE = 300.0
_MAX_HEADER = 1024  # a real header is about 80 characters


class BadSignature(ValueError):
    """The delivery is not signed by the configured secret (or is too old, or malformed)."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value OpenRouter would send for ``body`` at ``timestamp`` (simulator and tests)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"," + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: str, body: bytes, header: str | None, *, now: float | None = None, tolerance: float = TOLERANCE
) -> None:
    """Return if ``header`` signs ``body`` with ``secret`` within ``tolerance``; raise :class:`BadSignature` if not."""
    if not header:
        raise BadSignature("no signature header")
    if len(header) > _MAX_HEADER:
        raise BadSignature("signature header too long")
    parts = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    stamp = next((value for key, value in parts if key == "t"), "")
    signatures = [value.strip().lower() for key, value in parts if key == "v1"]
    if not stamp.isdigit() or len(stamp) > 12 or not signatures:
        raise BadSignature("malformed signature header")
    skew = abs((time.time() if now is None else now) - int(stamp))
    if skew > tolerance:
        raise BadSignature(f"signature timestamp {skew:.0f}s away from now (tolerance {tolerance:.0f}s)")
    expected = hmac.new(secret.encode(), stamp.encode() + b"," + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in signatures):
        raise BadSignature("signature does not match")
