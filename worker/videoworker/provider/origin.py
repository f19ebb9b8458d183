"""Where the client talks, and who sees the key: the base URL, its origin, the origin-bound auth, attribution.

Split from :mod:`videoworker.provider.client` so the client module holds the calls
only. The key goes to the configured OpenRouter origin (scheme, host, port) and to
nothing else reached through the same client, such as a signed storage URL.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx

from videoworker.errors import ConfigError

_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def origin(url: httpx.URL) -> Origin:
    """``(scheme, host, port)`` of ``url``, with the scheme's default port filled in."""
    return (url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 0))


class OriginBearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer …`` to requests for the OpenRouter origin, and to no other host.

    A signed storage URL or any other host reached through the same client never sees the key.
    """

    def __init__(self, api_key: str, base: Origin) -> None:
        self._header = f"Bearer {api_key}"
        self._origin = base

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if origin(request.url) == self._origin:
            request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return f"OriginBearerAuth(origin={self._origin!r})"


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
