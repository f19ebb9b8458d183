"""Sending the client's requests: always to the configured base URL, with the key, straight to the transport.

Why not :class:`httpx.AsyncClient`: every request the client makes is a fixed path under
one base URL, never follows a redirect, keeps no cookie and always carries the key. The
client's machinery for the general case (merging the URL with the base, the auth flow,
the redirect loop, handing each answer to a cookie jar, timing it) decided nothing here
and cost about 0.2 ms of the event loop per request, two requests per finished job
(``bench/transport.py`` has the figures). The httpx API stays: requests are
:class:`httpx.Request`, answers :class:`httpx.Response`, sent through any
:class:`httpx.AsyncBaseTransport` (:class:`~videoworker.provider.transport.AiohttpTransport`
in production, :class:`httpx.MockTransport` in tests).

The key goes to the base URL's origin and nowhere else: a request's URL is the base plus
a path the client built from checked parts (:func:`~videoworker.provider.answers.job_path`),
and an answer's redirect is returned as an answer, never followed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlencode

import httpx

from videoworker import __version__


class Sender:
    """Builds each request under ``base`` with the fixed headers and timeouts, and sends it through ``transport``."""

    def __init__(
        self,
        base: httpx.URL,
        api_key: str | None,
        headers: Mapping[str, str],
        timeout: httpx.Timeout,
        transport: httpx.AsyncBaseTransport,
    ) -> None:
        # no userinfo (aiohttp would turn it into a second Authorization), no query or fragment
        self.base = str(base.copy_with(username=None, password=None, query=None, fragment=None)).rstrip("/")
        fixed = {"Accept": "*/*", "User-Agent": f"videoworker/{__version__}", **headers}
        if api_key:
            fixed["Authorization"] = f"Bearer {api_key}"
        self.headers = httpx.Headers(fixed)
        self.timeout = timeout
        self.transport = transport
        self._extensions = {"timeout": timeout.as_dict()}
        self._closed = False

    def __repr__(self) -> str:
        return f"Sender(base={httpx.URL(self.base).copy_with(path='/')!s})"  # the origin, never the headers

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Send ``method`` to base + ``path`` (a path the caller built, starting with ``/``); the answer is streamed.

        The answer is closed on the way out: back to the pool when its body was read to the
        end, else its connection is dropped. Transport failures raise
        :class:`httpx.RequestError`, as from :class:`httpx.AsyncClient`; a request after
        :meth:`aclose` raises :class:`RuntimeError`, as there.
        """
        if self._closed:
            raise RuntimeError("cannot send a request: the provider client is closed")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        url = self.base + path + (f"?{urlencode(params)}" if params else "")
        sent = self.headers
        if headers:
            sent = sent.copy()
            sent.update(headers)
        request = httpx.Request(method, url, headers=sent, content=content, extensions=self._extensions)
        response = await self.transport.handle_async_request(request)
        try:
            yield response
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        """Close the transport's pool, at shutdown; later requests are refused."""
        self._closed = True
        await self.transport.aclose()
