"""URL checks and redaction shared by settings, logs and the CLI.

Several settings are URLs that may carry a secret: a password in the user part
(``amqp://user:secret@host``) or a token in the query (``?password=…``, ``?sslpassword=…``).
Anything that prints or logs one goes through :func:`redact_url` first.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """The URL with its password and every query value replaced by ``***``, fit to print or log."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # an unparsable URL: show nothing of it rather than a secret
        return "<unparsable URL>"
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = parts.query
    if query:
        query = urlencode([(key, "***") for key, _ in parse_qsl(query, keep_blank_values=True)], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url  # urlunsplit would also turn sqlite:////abs/path into sqlite://abs/path
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_https_url(value: str | None) -> str | None:
    """A base URL others call us on: https (plain http only on loopback, for tests), no query or fragment.

    Blank means unset (None); a trailing slash is dropped. Raises ValueError otherwise.
    """
    if value is None or not value.strip():
        return None
    parts = urlsplit(value)
    secure = parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname))
    if not parts.hostname or not secure or parts.query or parts.fragment:
        raise ValueError("must be an https:// URL (http:// only on loopback), without ?query or #fragment")
    return value.rstrip("/")
