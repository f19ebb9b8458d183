"""An httpx transport that sends through aiohttp's client: the httpx API, a quarter of the CPU.

Why: httpcore parses HTTP in Python (h11) and goes through anyio's stream layers; through
aiohttp's C parser and connection pool a request costs about a quarter of the CPU
(``bench/transport.py``, docs/benchmarks.md). With thousands of jobs polled, that is most
of the daemon's CPU. aiohttp is already a dependency (the health and callback servers).

Why not the ``httpx-aiohttp`` package: it maps any ``ClientConnectionError``, a server
closing the connection after the request went out included, to ``httpx.ConnectTimeout``,
and the client treats that as "never sent", so a submit the provider may have taken
would be sent again and paid twice. Here the mapping is the money rule itself
(:func:`mapped`): only errors raised while a connection was being made or awaited become
``ConnectError``, ``ConnectTimeout`` or ``ProxyError``, the "never sent" errors of
:mod:`videoworker.provider.answers`; every error after that is a read, write or protocol
error, which a submit reports as ambiguous.

Kept from httpx's own transport, because the client relies on it:

* connect, read, write and pool timeouts from the request's ``timeout`` extension. aiohttp
  has no write timeout, so a body over :data:`PIECE` is sent piece by piece and the
  request fails with ``WriteTimeout`` when no piece was taken for ``write`` seconds;
* a pooled connection with anything on it that nobody asked for (a server's parting 408,
  say) is closed, never reused: aiohttp would hand those bytes to the next request as its
  answer (:class:`_FreshConnector`);
* an answer whose status is no final answer (under 200) is a protocol error;
* no redirects, no cookies, bodies never decompressed; proxies from the environment
  (:mod:`videoworker.provider.proxies`) and the CA bundle (``SSL_CERT_FILE``) read when
  the client is made; idle connections kept for 5 s, httpx's default.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from multidict import CIMultiDict
from yarl import URL

from videoworker.provider.proxies import EnvironmentProxies

#: How long an idle connection is kept: httpx's default, under common servers' idle limits.
KEEPALIVE_S = 5.0
#: A body longer than this is sent in pieces of this size, each bounded by the write timeout.
PIECE = 64 * 1024


class _FreshConnector(aiohttp.TCPConnector):
    """aiohttp's pool, except that a connection holding unread bytes is closed instead of reused.

    aiohttp only checks that a pooled connection is still open. Bytes a server sent while
    it sat idle would be read as the next request's answer: a stale 503 would make a
    submit look refused and be sent again.
    """

    async def _get(self, key: Any, traces: list[Any]) -> aiohttp.connector.Connection | None:
        while (connection := await super()._get(key, traces)) is not None:
            protocol = connection.protocol
            if protocol is not None and not protocol.should_close:
                return connection
            connection.close()
        return None


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one :class:`aiohttp.ClientSession` of at most ``max_connections``."""

    def __init__(self, max_connections: int, *, verify: ssl.SSLContext | bool = True) -> None:
        self._max_connections = max_connections
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}
        self._proxies = EnvironmentProxies()

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop, as aiohttp wants.
        connector = _FreshConnector(
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

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        body = await request.aread()
        headers = CIMultiDict(request.headers.multi_items())
        proxy, proxy_headers = self._proxies.for_url(request.url.scheme, request.url.host)
        if proxy_headers and request.url.scheme == "http":  # no tunnel: the proxy reads the request itself
            headers.update(proxy_headers)
        options: dict[str, Any] = {
            "headers": headers,
            "allow_redirects": False,
            "timeout": self._timeout(request),
            "proxy": proxy,
            "proxy_headers": proxy_headers,
        }
        url = URL(str(request.url), encoded=True)
        write = request.extensions.get("timeout", {}).get("write")
        try:
            if len(body) > PIECE and write is not None:
                answer = await self._send_in_pieces(request.method, url, body, write, options)
            else:
                answer = await self._session.request(request.method, url, data=body or None, **options)
        except httpx.TransportError:
            raise
        except Exception as exc:
            raise mapped(exc) from exc
        try:
            if answer.status < 200:
                raise httpx.RemoteProtocolError(f"HTTP {answer.status} is not a final answer")
            # aiohttp decoded the reason as UTF-8 (undecodable bytes escaped); httpx wants bytes back
            reason = (answer.reason or "").encode("utf-8", "surrogateescape")
            return httpx.Response(
                answer.status,
                headers=list(answer.raw_headers),
                stream=_Body(answer),
                extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
                request=request,
            )
        except BaseException:
            answer.close()
            raise

    async def _send_in_pieces(
        self, method: str, url: URL, body: bytes, write: float, options: dict[str, Any]
    ) -> aiohttp.ClientResponse:
        """Send a long body piece by piece; ``WriteTimeout`` when no piece was taken for ``write`` seconds."""
        assert self._session is not None
        loop = asyncio.get_running_loop()
        answered = False  # the answer can come before the whole body went (a 413, say)
        async with asyncio.timeout(None) as clock:

            def deadline(at: float | None) -> None:
                if not answered:
                    clock.reschedule(at)

            async def pieces() -> AsyncIterator[bytes]:
                for start in range(0, len(body), PIECE):
                    deadline(loop.time() + write)  # aiohttp asks for a piece once the last one is taken
                    yield body[start : start + PIECE]
                deadline(None)  # all taken: from here the read timeout bounds the wait

            try:
                answer = await self._session.request(method, url, data=pieces(), **options)
            except asyncio.CancelledError:
                if clock.expired():
                    raise httpx.WriteTimeout(f"no part of the body was taken for {write:g} s") from None
                raise
            answered = True
            clock.reschedule(None)
            return answer

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
