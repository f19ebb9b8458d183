"""Where the client talks: the base URL checked, its origin (for the client's repr), attribution headers.

Split from :mod:`videoworker.provider.client` so the client module holds the calls
only. The key itself is added by :mod:`videoworker.provider.sender`, which only ever
sends to the base URL.
"""

from __future__ import annotations

import httpx

from videoworker.errors import ConfigError

_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def origin(url: httpx.URL) -> Origin:
    """``(scheme, host, port)`` of ``url``, with the scheme's default port filled in."""
    return (url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 0))


def base_url_of(base_url: str) -> httpx.URL:
    """The setting as an http(s) URL without a trailing slash; :class:`ConfigError` otherwise."""
    # The message never echoes the URL: it could carry credentials in its userinfo.
    problem = ConfigError("openrouter_base_url must be an http(s) URL such as https://openrouter.ai/api/v1")
    try:
        base = httpx.URL(base_url.rstrip("/"))
    except httpx.InvalidURL:
        raise problem from None
    if base.scheme not in _DEFAULT_PORTS or not base.host:
        raise problem
    return base


def attribution_headers(app_title: str | None, app_url: str | None) -> dict[str, str]:
    """OpenRouter's optional app attribution headers, for the values that are set."""
    headers: dict[str, str] = {}
    if app_title:
        headers["X-OpenRouter-Title"] = app_title
        headers["X-Title"] = app_title  # the older name, still read by OpenRouter
    if app_url:
        headers["HTTP-Referer"] = app_url
    return headers
