"""Reading OpenRouter's answers: which error an answer means, how long to wait, and what a body says.

Pure functions over status codes, headers and bytes; :class:`videoworker.provider.client.OpenRouterClient`
calls them. The classification follows one rule: a submit costs money and has no
idempotency key, so anything that may have reached the provider without a readable
answer is :class:`~videoworker.errors.AmbiguousSubmit`, never retryable.

Everything read here is untrusted: ``Retry-After`` is capped (a year-long wait would
park a job for good), bodies go through :func:`~videoworker.provider.untrusted.load_json`,
and error text through :func:`~videoworker.provider.scrub.scrub`.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import httpx
from pydantic import ValidationError

from videoworker.errors import AmbiguousSubmit, PermanentError, ProviderError, RetryableError
from videoworker.provider.models import Job
from videoworker.provider.scrub import scrub
from videoworker.provider.untrusted import AnswerRefused, load_json

_JOB_ID = re.compile(r"[A-Za-z0-9._:-]{1,256}")
_RETRYABLE_STATUS = frozenset({408, 429, 503})
# The request certainly never left: safe to repeat even a paid submit.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
_DETAIL_LIMIT = 300
_HEADER_LIMIT = 64  # longer than any delta-seconds or HTTP-date


def parse_retry_after(value: str | None, *, cap: float | None = None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); ``None`` if absent or unreadable.

    A negative value or a date in the past gives 0; anything longer than ``cap`` gives
    ``cap`` (``max_retry_after``). Garbage, ``nan`` and ``inf`` read as absent. ``now``
    (unix seconds) is for tests.
    """
    text = (value or "").strip()
    if not text or len(text) > _HEADER_LIMIT:
        return None
    try:
        seconds: float | None = float(text)
    except ValueError:
        seconds = _seconds_until(text, time.time() if now is None else now)
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), math.inf if cap is None else cap)


def _seconds_until(http_date: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - now


def status_error_class(endpoint: str, status: int) -> type[ProviderError]:
    if status in _RETRYABLE_STATUS:
        return RetryableError
    if status >= 500:
        return AmbiguousSubmit if endpoint == "submit" else RetryableError
    return PermanentError


def transport_error_class(endpoint: str, exc: httpx.RequestError) -> type[ProviderError]:
    if isinstance(exc, httpx.UnsupportedProtocol):
        return PermanentError
    if endpoint != "submit" or isinstance(exc, _NOT_SENT):
        return RetryableError
    # Read/write timeouts, resets and protocol errors: part or all of the body may have arrived.
    return AmbiguousSubmit


def is_job_id(job_id: object) -> bool:
    # Dot-only ids would be "." / ".." path segments that climb out of /videos/.
    return isinstance(job_id, str) and _JOB_ID.fullmatch(job_id) is not None and job_id.strip(".") != ""


def job_path(job_id: str, endpoint: str) -> str:
    """``/videos/{job_id}``, after making sure the id is one safe path segment."""
    if not is_job_id(job_id):
        raise PermanentError(f"{endpoint}: refusing job id {shorten(repr(job_id), 80)}", endpoint=endpoint)
    return f"/videos/{job_id}"


def encode_body(body: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(dict(body), allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        # Nothing was sent, and sending the same body again cannot help.
        raise PermanentError(f"submit: request body is not JSON: {shorten(str(exc), 120)}", endpoint="submit") from None


def parse_job(data: Any, *, keep_bare_id: bool) -> Job | None:
    """The job in a parsed answer, or ``None``. ``keep_bare_id`` salvages the id from an odd submit answer."""
    if not isinstance(data, dict):
        return None
    try:
        return Job.model_validate(data)
    except ValidationError:
        job_id = data.get("id")
        return Job(id=job_id) if keep_bare_id and isinstance(job_id, str) and job_id else None


def error_detail(body: bytes) -> str:
    """The provider's error text from ``{"error": {"code", "message", "metadata"}}``, else the body; scrubbed."""
    try:
        data = load_json(body)
    except AnswerRefused:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or "no message")
        notes = [f"code {_short(error['code'])}"] if error.get("code") is not None else []
        metadata = error.get("metadata")
        if isinstance(metadata, dict) and metadata.get("provider_name"):
            notes.append(f"provider {_short(metadata['provider_name'])}")
        return scrub(message + (f" ({', '.join(notes)})" if notes else ""), _DETAIL_LIMIT)
    if isinstance(error, str):
        return scrub(error, _DETAIL_LIMIT)
    return scrub(body[: 8 * _DETAIL_LIMIT].decode("utf-8", "replace"), _DETAIL_LIMIT)


def _short(value: object) -> str:
    return str(value)[:80] if isinstance(value, str | int) else type(value).__name__


def shorten(text: str, limit: int = _DETAIL_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
