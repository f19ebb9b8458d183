"""One signed POST and what its answer means: delivered, gone, slow down, or try again.

The body is the published event, serialised as videoworker publishes it. It is signed per
attempt (a fresh ``webhook-timestamp``, so receivers' five-minute tolerance holds for late
retries) under the notification's stable id, which receivers use to drop repeats.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from videoworker import NotifyError
from videoworker_webhooks.guard import Target

#: How long a 429 or 503 may ask us to wait; longer waits are the host's backoff's business.
MAX_RETRY_AFTER = 300.0
#: How much of a receiver's answer an error message quotes.
QUOTE = 200


@dataclass(frozen=True)
class Answer:
    """A receiver's answer: its status and the first ``max_response_bytes`` of its body."""

    status: int
    head: bytes
    retry_after: float | None


def body_of(payload: dict[str, Any]) -> str:
    """The event as JSON text, byte for byte as the broker event is published (compact, ASCII, no NaN)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


def signed_headers(signer: Webhook, msg_id: str, body: str, user_agent: str) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, signed now."""
    now = int(time.time())
    signature = signer.sign(msg_id, datetime.fromtimestamp(now, UTC), body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": user_agent,
        "accept-encoding": "identity",  # the body is read raw and capped; a compressed one could expand
    }


async def post(
    client: httpx.AsyncClient,
    target: Target,
    body: str,
    headers: dict[str, str],
    *,
    label: str,
    timeout: float,
    max_response_bytes: int,
) -> Answer:
    """POST ``body`` to ``target`` within ``timeout`` seconds in all; read at most ``max_response_bytes`` back.

    :raises videoworker.NotifyError: (retryable) on a timeout, a refused or broken connection, or a TLS failure.
    """
    try:
        async with asyncio.timeout(timeout):  # httpx's timeouts are per read, so a trickle could last for ever
            request = client.build_request(
                "POST",
                target.url,
                content=body.encode(),
                headers={**headers, **target.headers},
                extensions=target.extensions,
            )
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                head = await _read_capped(response, max_response_bytes)
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        raise NotifyError(f"{label}: no answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise NotifyError(f"{label}: {type(exc).__name__}: {_quote(str(exc))}") from None
    return Answer(response.status_code, head, parse_retry_after(response.headers.get("retry-after")))


def judge(answer: Answer, label: str) -> None:
    """Return on a 2xx; raise :class:`~videoworker.NotifyError` for anything else (410 is the caller's to decide)."""
    if 200 <= answer.status < 300:
        return
    text = _quote(answer.head.decode("utf-8", "replace"))
    said = f": {text}" if text else ""
    if answer.status in (429, 503):
        wait = f", asked to wait {answer.retry_after:g} s" if answer.retry_after is not None else ""
        raise NotifyError(f"{label} answered {answer.status}{wait}{said}", retry_after=answer.retry_after)
    raise NotifyError(f"{label} answered {answer.status}{said}")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay or HTTP date), clamped to 0–300; None if absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    # raw bytes, stopping at the cap: a receiver cannot make us buffer (or decompress) more than we asked
    head = bytearray()
    if limit <= 0:
        return b""
    async for chunk in response.aiter_raw():
        head += chunk[: limit - len(head)]
        if len(head) >= limit:
            break
    return bytes(head)


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= QUOTE else flat[: QUOTE - 1] + "…"
