"""Making the provider's error text safe to publish: :func:`scrub`.

Error messages from OpenRouter (a failed job's ``error``, an HTTP error body, a
transport error's text) end up in events, logs and the ledger. The provider is not
trusted, so its text is reduced before it gets there: control and format characters
(terminal escapes, bidi overrides, zero-width marks, newlines) are removed; anything
that looks like a credential (``sk-…`` keys, ``Bearer``/``Basic`` tokens, JWTs,
``key=value`` secrets, URL userinfo and query strings: signed storage URLs carry
their signature there) is replaced with ``***``; and the result is cut to
:data:`ERROR_TEXT_LIMIT` characters. Redaction runs before the cut, so a secret
straddling the limit cannot leave its first half behind.
"""

from __future__ import annotations

import re
import unicodedata

#: Longest provider error text kept, in characters (after scrubbing).
ERROR_TEXT_LIMIT = 500

_REDACTED = "***"
# Bounded work: the text is cut to this many characters before the regexes run.
_WORK_LIMIT = 8 * ERROR_TEXT_LIMIT
_SECRET_NAMES = r"(?:x-amz-)?(?:api[_-]?key|access[_-]?token|token|secret|password|signature)"
_SECRETS = (
    # URLs: hide userinfo, query and fragment (signatures, tokens); keep scheme, host and path.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@]*@"), r"\1***@"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#]*)[?#]\S*"), r"\1?***"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s,;\"']+"), r"\1 ***"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"), "sk-***"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"), _REDACTED),
    (re.compile(rf"(?i)\b({_SECRET_NAMES})(\s*[=:]\s*)[^\s&,;\"']+"), r"\1\2***"),
)


def scrub(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    """Provider text made safe for events and logs: one line, no control characters, no secrets, at most ``limit``.

    Called on every piece of provider text before it enters an error message or a job's
    ``error``; see the module docstring for what is removed and why.
    """
    text = _printable(text[:_WORK_LIMIT])
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _printable(text: str) -> str:
    """``text`` on one line: every control, format or unassigned character becomes a space, runs of spaces one."""
    if not text.isascii() or not text.isprintable():
        text = "".join(" " if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in text)
    return " ".join(text.split())
