"""Making outside text safe for Slack, and the few numbers a message shows.

Values from a producer or the provider (prompt, ids, model, metadata, error messages,
locations) go into ``plain_text`` objects, which Slack never parses for mentions,
links or formatting. The little mrkdwn this plugin sends (the fallback ``text`` and
the links) escapes such values with :func:`mrkdwn_escape`, and links only URLs that
:func:`link_target` accepted.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# legacy "link_names" parsing turns these words into mentions even without <!…>
_BROADCAST = re.compile(r"@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
_WORD_JOINER = "\u2060"
_UNSAFE_IN_LINK = frozenset(' <>|"`\\')
MAX_LINK_CHARS = 2000


def mrkdwn_escape(text: str) -> str:
    """``text`` made inert in mrkdwn: ``&``, ``<``, ``>`` escaped as Slack asks, ``@here``-style words defused.

    Escaping the three control characters is what stops ``<!channel>``, ``<@U123>`` and
    ``<https://x|label>``; a word joiner after the ``@`` of @here/@channel/@everyone keeps
    them plain text for clients that still resolve bare names. ``*bold*``-style markers
    have no escape in mrkdwn, which is why outside values go to ``plain_text`` instead.
    """
    return _BROADCAST.sub("@" + _WORD_JOINER, text.translate(_ESCAPES))


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, with an ellipsis when something was cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + "…"


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) made one space: excerpts read as one line."""
    return " ".join(text.split())


def link_target(value: object) -> str | None:
    """``value`` ready to be the URL of a mrkdwn ``<url|label>`` link, or None if it must not be linked.

    Only absolute http(s) URLs with a host, of sane length, with none of the characters
    that end or break a link (``|``, ``>``, ``<``, space, quotes, control characters)
    qualify; ``&`` is escaped as Slack asks (presigned URLs are full of them).
    """
    if not isinstance(value, str) or not value or len(value) > MAX_LINK_CHARS:
        return None
    if any(ch in _UNSAFE_IN_LINK or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return value.replace("&", "&amp;")


def mrkdwn_link(target: str, label: str) -> str:
    """A mrkdwn link to a URL that :func:`link_target` returned, with ``label`` escaped."""
    return f"<{target}|{mrkdwn_escape(label)}>"


def format_cost(value: object) -> str | None:
    """A USD amount as people read it (``$0.42``, ``$0.0042`` below a cent, ``$1,234.50``), or None if not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    sign, amount = ("-" if value < 0 else ""), abs(float(value))
    if 0 < amount < 0.01:
        return f"{sign}${amount:.4f}"
    return f"{sign}${amount:,.2f}"


def parse_time(value: object) -> datetime | None:
    """An event timestamp (UTC ISO 8601, e.g. ``2026-11-25T19:01:20.123Z``) as an aware datetime, or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def format_duration(start: object, end: object) -> str | None:
    """The time from ``start`` to ``end`` (event timestamps) as ``42.5 s``, ``3 min 07 s`` or ``1 h 02 min``."""
    began, ended = parse_time(start), parse_time(end)
    if began is None or ended is None:
        return None
    seconds = (ended - began).total_seconds()
    if seconds < 0:
        return None
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
