"""The provider client's proxies, from the environment, read once when the client is made.

httpx reads ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` when a client
is made; aiohttp's ``trust_env`` would read them, and ``~/.netrc``, on every request.
This reads them once, as httpx does, accepts ``host:port`` without a scheme as httpx
does, and keeps a proxy's credentials apart from its URL, so they travel only in
``Proxy-Authorization`` and never in a message.
"""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Callable, Mapping

from yarl import URL

from videoworker.errors import ConfigError

#: The standard library's NO_PROXY matching, given the variables read at start (untyped in typeshed).
_bypass: Callable[[str, Mapping[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]

Proxy = tuple[URL | None, dict[str, str] | None]
_DIRECT: Proxy = (None, None)


class EnvironmentProxies:
    """Which proxy a request goes through, and the header that carries the proxy's credentials."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        found = urllib.request.getproxies_environment() if environ is None else dict(environ)
        self._no_proxy = {"no": found["no"]} if "no" in found else {}
        self._by_scheme = {
            scheme: _parse(scheme, found[scheme]) for scheme in ("http", "https", "all") if found.get(scheme)
        }
        self._chosen: dict[tuple[str, str], Proxy] = {}

    def for_url(self, scheme: str, host: str) -> Proxy:
        """``(proxy URL without credentials, {"Proxy-Authorization": ...} or None)``; ``(None, None)`` for direct."""
        key = (scheme, host)
        chosen = self._chosen.get(key)
        if chosen is None:
            proxy = self._by_scheme.get(scheme) or self._by_scheme.get("all")
            bypass = self._no_proxy and _bypass(host, self._no_proxy)
            chosen = _DIRECT if proxy is None or bypass else proxy
            self._chosen[key] = chosen
        return chosen


def _parse(scheme: str, raw: str) -> Proxy:
    # The message never echoes the value: it may carry a password.
    name = f"{scheme.upper()}_PROXY"
    try:
        url = URL(raw if "://" in raw else f"http://{raw}")
    except ValueError:
        raise ConfigError(f"{name} is not a URL such as http://proxy.example:3128") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"{name} must be an http:// proxy URL with a host, such as http://proxy.example:3128")
    if not url.user:
        return url, None
    pair = f"{url.user}:{url.password or ''}".encode()
    return url.with_user(None), {"Proxy-Authorization": f"Basic {base64.b64encode(pair).decode()}"}
