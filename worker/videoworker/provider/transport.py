"""An httpx transport that sends through aiohttp's client: the httpx API, a third of the CPU.

Why: httpcore parses HTTP in Python (h11) and goes through anyio's stream layers, and a
request cost about 2.8–3.5 ms of CPU on this project's bench machine; through aiohttp's
C parser and connection pool the same request costs about 1 ms (docs/benchmarks.md).
With thousands of jobs polled, that is most of the daemon's CPU. aiohttp is already a
dependency (the health and callback servers).

Why not the ``httpx-aiohttp`` package: it maps any ``ClientConnectionError``, a server
closing the connection after the request went out included, to ``httpx.ConnectTimeout``,
and the client treats that as "never sent", so a submit the provider may have taken
would be sent again and paid twice. Here the mapping is the money rule itself
(:func:`mapped`): only errors raised while a connection was being made or awaited become
``ConnectError``, ``ConnectTimeout`` or ``ProxyError``, the "never sent" errors of
:mod:`videoworker.provider.answers`; every error after that is a read or protocol
error, which a submit reports as ambiguous.

What the client relies on, kept from httpx's own transport: connect, read and pool
timeouts from the request's ``timeout`` extension (aiohttp has no write timeout; a
request body here is a small JSON document and the read timeout bounds the wait for its
answer); no redirects, no cookies, bodies never decompressed; proxies and CA bundles
from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE``),
read when the client is made, as httpx reads them; connections kept alive for 5 s idle,
httpx's default.
"""

from __future__ import annotations

import base64
import ssl
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import httpx
from multidict import CIMultiDict
from yarl import URL

#: How long an idle connection is kept: httpx's default, under common servers' idle limits.
KEEPALIVE_S = 5.0


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one :class:`aiohttp.ClientSession` of at most ``max_connections``."""

    def __init__(self, max_connections: int, *, verify: ssl.SSLContext | bool = True) -> None:
        self._max_connections = max_connections
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}
        # Read once, as httpx does: aiohttp's trust_env would read them, and ~/.netrc, on every request.
        self._env_proxies = urllib.request.getproxies()
        self._proxies: dict[tuple[str, str], tuple[URL | None, dict[str, str] | None]] = {}

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop, as aiohttp wants.
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, keepalive_timeout=KEEPALIVE_S, ssl=self._ssl, ttl_dns_cache=60
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Accept", "Content-Type"),
        )

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        got = request.extensions.get("timeout", {})
        key = (got.get("connect"), got.get("read"), got.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            connect, read, pool = key
            # aiohttp's ``connect`` covers waiting for a pooled connection and making a new one.
            waits = None if connect is None or pool is None else connect + pool
            timeout = aiohttp.ClientTimeout(total=None, connect=waits, sock_connect=connect, sock_read=read)
            self._timeouts[key] = timeout
        return timeout

    def _proxy(self, url: httpx.URL) -> tuple[URL | None, dict[str, str] | None]:
        """The proxy for ``url`` from ``HTTP(S)_PROXY``/``NO_PROXY``, its credentials apart (never in a message)."""
        key = (url.scheme, url.host)
        found = self._proxies.get(key)
        if found is None:
            raw = self._env_proxies.get(url.scheme)
            if not raw or urllib.request.proxy_bypass(url.host):
                found = (None, None)
            else:
                proxy = URL(raw)
                pair = f"{proxy.user}:{proxy.password or ''}".encode()
                auth = {"Proxy-Authorization": f"Basic {base64.b64encode(pair).decode()}"} if proxy.user else None
                found = (proxy.with_user(None), auth)
            self._proxies[key] = found
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        body = await request.aread()
        headers = CIMultiDict(request.headers.multi_items())
        proxy, proxy_headers = self._proxy(request.url)
        if proxy_headers and request.url.scheme == "http":  # no tunnel: the proxy reads the request itself
            headers.update(proxy_headers)
        try:
            answer = await self._session.request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(request),
                proxy=proxy,
                proxy_headers=proxy_headers,
            )
        except Exception as exc:
            raise mapped(exc) from exc
        return httpx.Response(
            answer.status,
            headers=list(answer.raw_headers),
            stream=_Body(answer),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (answer.reason or "").encode("latin-1")},
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Body(httpx.AsyncByteStream):
    """An answer's body as aiohttp reads it (chunked transfer decoded, content coding left alone)."""

    def __init__(self, answer: aiohttp.ClientResponse) -> None:
        self._answer = answer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._answer.content.iter_any():
                yield chunk
        except Exception as exc:
            raise mapped(exc) from exc

    async def aclose(self) -> None:
        # Back to the pool when the body was read to the end; closed otherwise.
        self._answer.release()


def mapped(exc: Exception) -> httpx.TransportError:
    """The httpx error for an aiohttp one; "not sent" only when the connection was never had.

    Order matters: aiohttp's classes overlap (a connect timeout is also a timeout and an
    ``OSError``), so the narrow "before sending" cases come first and anything unknown
    ends as a read error, the side on which a submit is never repeated.
    """
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientHttpProxyError | aiohttp.ClientProxyConnectionError):
        return httpx.ProxyError(text)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text)
    if isinstance(exc, aiohttp.ClientConnectorError):  # DNS, refused, TLS handshake or certificate
        return httpx.ConnectError(text)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol(text)
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout(text)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(text)
    return httpx.ReadError(text)
