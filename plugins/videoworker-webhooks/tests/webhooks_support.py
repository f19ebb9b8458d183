"""Real receivers and test doubles for the webhooks plugin's tests: no mocks of the plugin itself.

* :class:`Receiver`: an aiohttp server on 127.0.0.1 that verifies each delivery with
  ``standardwebhooks`` and answers from a script (status, Retry-After, held, endless body).
* :class:`Sentinel`: a bare TCP listener that counts connections; it must see none from a
  refused URL.
* :class:`FakeResolver`: answers host names from a table, in turn, and records the questions.
* :class:`RecordingTransport`: an httpx transport that keeps each request it is handed.
* :class:`RedirectingTransport`: a real httpcore pool whose sockets all go to one local port,
  whatever address they were asked for, so a pinned TLS connection can be made for real.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from videoworker import JobEvent, Notification, NotifyTarget, Settings

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
REQUEST_URL_SECRET = "whsec_" + base64.b64encode(bytes(range(50, 82))).decode()


def settings_with(tmp_path: Any, **section: Any) -> Settings:
    """Daemon settings whose ``[plugins.webhooks]`` section is ``section``."""
    return Settings(data_dir=tmp_path, openrouter_api_key="k", plugins={"webhooks": section})


def event(status: str = "completed", delivery: dict[str, Any] | None = None, request_id: str = "r-1") -> JobEvent:
    """A job event shaped like the ones videoworker publishes."""
    payload = {
        "id": request_id,
        "message_id": f"{request_id}:{status}",
        "status": status,
        "model": "acme/video-1",
        "prompt_excerpt": "a wombat on a bicycle, «très» vite",
        "outputs": [{"index": 0, "location": "file:///data/videos/r-1/0.mp4", "bytes": 123456}],
    }
    return JobEvent(status=status, request_id=request_id, payload=payload, delivery=delivery or {})


def notification(target: NotifyTarget, status: str = "completed", attempt: int = 1, nid: str = "n-1") -> Notification:
    """One owed delivery of a ``status`` event to ``target``."""
    return Notification(id=nid, event=event(status), target=target, attempt=attempt, created_at=time.time())


@dataclass
class Reply:
    """How the receiver answers one delivery."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hold: asyncio.Event | None = None  # answer only once this is set
    endless: bool = False  # stream the body for ever (until the client hangs up)


@dataclass
class Delivery:
    """One POST as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    payload: Any
    error: str | None
    path_qs: str
    peer: Any


class Receiver:
    """A webhook receiver on 127.0.0.1 (plain, or TLS with ``ssl_context``) that verifies signatures."""

    def __init__(self, secret: str = SECRET, ssl_context: ssl.SSLContext | None = None) -> None:
        self.secret = secret
        self.ssl_context = ssl_context
        self.replies: list[Reply] = []
        self.deliveries: list[Delivery] = []
        self.stream_ended = asyncio.Event()
        self.streamed = 0
        self._holds: list[asyncio.Event] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        for hold in self._holds:
            hold.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    @property
    def verified(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.error is None]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        try:
            payload, error = Webhook(self.secret).verify(body, headers), None
        except WebhookVerificationError as exc:
            payload, error = None, str(exc)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.deliveries.append(Delivery(headers, body, payload, error, request.path_qs, peer))
        reply = self.replies.pop(0) if self.replies else Reply()
        if reply.hold is not None:
            self._holds.append(reply.hold)
            await reply.hold.wait()
        if not reply.endless:
            return web.Response(status=reply.status, headers=reply.headers, body=reply.body)
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            while True:
                await response.write(chunk)
                self.streamed += len(chunk)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.stream_ended.set()
        return response


class Sentinel:
    """A TCP listener on 127.0.0.1 that must not be reached; it counts the connections it accepts."""

    def __init__(self) -> None:
        self.connections = 0
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Sentinel:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def connections_before_ours(self) -> int:
        """How many connections arrived before one we make now (accepts are handled in order)."""
        before = self.connections
        _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.connections > before), 10)
        writer.close()
        return self.connections - 1

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self._changed:
            self.connections += 1
            self._changed.notify_all()
        writer.close()


class FakeResolver:
    """A resolver from a table: each name answers its lists in turn (the last one repeats); others fail."""

    def __init__(self, table: dict[str, Sequence[Sequence[str]]]) -> None:
        self.table = {name: list(answers) for name, answers in table.items()}
        self.questions: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.questions.append((host, port))
        answers = self.table.get(host)
        if not answers:
            raise OSError(f"no such host {host}")
        return list(answers.pop(0) if len(answers) > 1 else answers[0])


class HangingResolver:
    """A resolver that never answers, to show a resolution is bounded by the timeout."""

    async def __call__(self, host: str, port: int) -> list[str]:
        await asyncio.Event().wait()
        return []


class RecordingTransport(httpx.AsyncBaseTransport):
    """An httpx transport that keeps every request it is handed and answers ``status``; no network at all."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        return httpx.Response(self.status, stream=_Chunks([b"ok"]))


class RedirectingBackend(httpcore.AsyncNetworkBackend):
    """Opens every TCP connection to 127.0.0.1:``port``, recording the address it was asked for."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.asked: list[tuple[str, int]] = []
        self._real = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        self.asked.append((host, port))
        return await self._real.connect_tcp("127.0.0.1", self.port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self._real.sleep(seconds)


class RedirectingTransport(httpx.AsyncBaseTransport):
    """httpx over a real httpcore pool (TLS, SNI, certificate checks) whose sockets all go to one local port."""

    def __init__(self, port: int, ssl_context: ssl.SSLContext) -> None:
        self.backend = RedirectingBackend(port)
        self._pool = httpcore.AsyncConnectionPool(ssl_context=ssl_context, network_backend=self.backend)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            answer = await self._pool.handle_async_request(core)
        except httpcore.ConnectError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        return httpx.Response(answer.status, headers=answer.headers, stream=_Stream(answer), extensions={})

    async def aclose(self) -> None:
        await self._pool.aclose()


class _Chunks(httpx.AsyncByteStream):
    """A response body as a real transport gives it: not yet read."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


class _Stream(httpx.AsyncByteStream):
    def __init__(self, answer: httpcore.Response) -> None:
        self._answer = answer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._answer.aiter_stream():
            yield part

    async def aclose(self) -> None:
        await self._answer.aclose()
