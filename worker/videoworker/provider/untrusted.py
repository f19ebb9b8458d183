"""Bounds on what the provider may send: how big and deep a JSON answer, what a cost, which media type.

OpenRouter's answers are untrusted input, whether the endpoint is compromised, buggy or
impersonated. This module holds the limits and the pure checks that apply them, and
:class:`ProviderLimits`, the per-deployment bounds taken from the settings:

- A JSON answer is at most :data:`MAX_ANSWER_BYTES` and nested at most
  :data:`MAX_JSON_DEPTH` deep (:func:`load_json`). ``json.loads`` raises
  ``RecursionError``, not ``ValueError``, on deep input, and a merely deep-ish value
  that parses can still break a later ``json.dumps`` with a deeper stack (an event,
  the ledger); both are refused as :class:`AnswerRefused`. ``NaN``, ``Infinity`` and
  overflowing numbers (``1e309``) are read as ``null``, because no provider value may
  make an event unserialisable.
- A cost is a finite, non-negative number, or unknown (:func:`finite_cost`).
- A video's media type comes from :data:`VIDEO_TYPES`; any other is recorded as
  ``video/mp4`` (:func:`video_type`). Not refused, because the body itself was checked
  (an ISO-BMFF ``ftyp`` box), so the header is only a label, and a wrong label (a CDN's
  ``application/octet-stream``) must not fail a paid-for video; not kept, because
  storage plugins pass it on (an S3 object's ``Content-Type``), where ``text/html``
  would turn a presigned URL into a page. ``video/webm`` is not listed: the ``ftyp``
  check refuses WebM bodies, so that label could only be wrong.
- A ``Set-Cookie`` is not kept: nothing on the way holds a cookie jar (the sender builds
  every request from fixed headers, and the transport's jar is aiohttp's dummy one). The
  API uses none, and what one answer sets must not ride along on the next request.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from videoworker.config import Settings

#: Largest JSON answer read from the provider (submit, poll, models), bytes.
MAX_ANSWER_BYTES = 1024 * 1024
#: Deepest nesting of arrays and objects accepted in a JSON answer.
MAX_JSON_DEPTH = 64
#: Media types a downloaded video may be recorded with; anything else becomes :data:`DEFAULT_VIDEO_TYPE`.
VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime"})
DEFAULT_VIDEO_TYPE = "video/mp4"


class AnswerRefused(ValueError):
    """Raised when an answer is too big, too deep or encoded: the provider is broken or hostile, not slow."""


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """What one deployment allows the provider: built from the settings, given to the client once.

    The defaults are the settings' defaults, so a client built without limits behaves as
    a daemon with default settings does.
    """

    #: outputs one completed job may list (``max_outputs_per_job``)
    max_outputs: int = 8
    #: longest ``Retry-After`` honoured, seconds (``max_retry_after``)
    max_retry_after: float = 300.0
    #: longest one output's download may take, request to last byte, seconds (``download_deadline``)
    download_deadline: float = 3600.0
    #: permission bits of downloaded files (``file_mode``)
    file_mode: int = 0o600

    @classmethod
    def from_settings(cls, settings: Settings) -> ProviderLimits:
        return cls(
            max_outputs=settings.max_outputs_per_job,
            max_retry_after=settings.max_retry_after,
            download_deadline=settings.download_deadline,
            file_mode=int(settings.file_mode, 8),
        )


def load_json(body: bytes) -> Any:
    """The JSON value in ``body``, or ``None`` when it is not UTF-8 JSON; :class:`AnswerRefused` when too deep.

    Called on every answer body already capped at :data:`MAX_ANSWER_BYTES`. Non-finite
    numbers become ``None`` (see the module docstring). Input deeper than Python's
    recursion limit makes ``json.loads`` raise ``RecursionError`` at once; anything
    that parses is then checked against :data:`MAX_JSON_DEPTH` in linear time.
    """
    try:
        body.decode("utf-8")  # RFC 8259; it also keeps the byte-level depth check below exact
        value = json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise AnswerRefused(f"answer nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:  # also UnicodeDecodeError, and ints past Python's digit limit
        return None
    # Fewer opening brackets than the limit cannot nest past it: no scan for ordinary answers.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _deeper_than_limit(body):
        raise AnswerRefused(f"answer nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _no_constant(name: str) -> None:
    return None  # NaN, Infinity, -Infinity


def _finite_float(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


# Strings (whose brackets do not nest) in UTF-8 JSON, where '"' and '\\' bytes are only ever ASCII.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_KEEP_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_ONE_KIND = bytes.maketrans(b"{}", b"[]")


def _nesting(depth: int) -> re.Pattern[bytes]:
    """Matches a balanced string of brackets nested at most ``depth`` deep; possessive, so linear time."""
    pattern = b""
    for _ in range(depth):
        pattern = rb"(?:\[" + pattern + rb"\])*+"
    return re.compile(pattern)


_WITHIN_LIMIT = _nesting(MAX_JSON_DEPTH)


def _deeper_than_limit(body: bytes) -> bool:
    """True when the arrays and objects of ``body`` (valid UTF-8 JSON) nest past :data:`MAX_JSON_DEPTH`.

    A scan of the bytes with C-speed tools (a walk of the parsed value took 0.3 s on a
    hostile 1 MiB answer): strings removed, every other byte but brackets dropped, and
    the rest matched against a pattern that only a shallow enough nesting fits.
    """
    brackets = _JSON_STRING.sub(b"", body).translate(_ONE_KIND, _KEEP_BRACKETS)
    return _WITHIN_LIMIT.fullmatch(brackets) is None


def finite_cost(value: Any) -> float | None:
    """A reported cost as a finite, non-negative float; anything else (NaN, -1, "12", true, 1e309) is unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        cost = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return cost if math.isfinite(cost) and cost >= 0 else None


def video_type(header: str | None) -> str:
    """The media type to record for a downloaded video, from its ``Content-Type``: listed, else ``video/mp4``."""
    media = (header or "").split(";", 1)[0].strip().lower()
    return media if media in VIDEO_TYPES else DEFAULT_VIDEO_TYPE
