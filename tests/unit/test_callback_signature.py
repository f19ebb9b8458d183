"""OpenRouter's callback signature: what passes, and every way a delivery is refused."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from videoworker.callbacks.signature import BadSignature, sign, verify

SECRET = "whsec_example"
BODY = b'{"type":"video.generation.completed","data":{"id":"abc123","status":"completed"}}'
NOW = 1_790_000_000


def test_the_documented_scheme_passes() -> None:
    # HMAC-SHA256 over "<t>," + raw body, hex, keyed with the secret as UTF-8
    mac = hmac.new(SECRET.encode(), f"{NOW},".encode() + BODY, hashlib.sha256).hexdigest()
    verify(SECRET, BODY, f"t={NOW},v1={mac}", now=NOW)
    verify(SECRET, BODY, f" t={NOW} , v1={mac.upper()} ", now=NOW + 299)  # spaces, upper-case hex
    verify(SECRET, BODY, f"t={NOW},v1=00,v1={mac}", now=NOW)  # any of several v1 values


@pytest.mark.parametrize(
    ("header", "now", "why"),
    [
        (None, NOW, "no signature"),
        ("", NOW, "no signature"),
        (sign(SECRET, BODY, NOW), NOW + 301, "away from now"),
        (sign(SECRET, BODY, NOW), NOW - 301, "away from now"),
        (sign("other", BODY, NOW), NOW, "does not match"),
        (sign(SECRET, BODY + b" ", NOW), NOW, "does not match"),
        (f"t=abc,v1={'0' * 64}", NOW, "malformed"),
        (f"t={NOW}", NOW, "malformed"),
        (f"t={NOW},v1=\u00e9\u00e9", NOW, "does not match"),  # non-ASCII never reaches compare_digest as str
        ("t=1," + "v1=0," * 400, NOW, "too long"),
    ],
)
def test_refused(header: str | None, now: int, why: str) -> None:
    with pytest.raises(BadSignature, match=why):
        verify(SECRET, BODY, header, now=now)
