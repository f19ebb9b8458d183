"""Health endpoints for supervisors: ``/healthz`` (alive), ``/readyz`` (taking work), ``/metrics``.

The server knows nothing of the daemon: it is given a readiness function whose answer
it serves, 200 when ``ready`` is true and 503 (with the reasons) otherwise, so an
orchestrator can see a broker outage or a paused intake.

The port may face a network, and no client may take the daemon's file descriptors with
it (1,021 half-sent requests once left the process unable to open any socket). So the
site accepts connections itself (:class:`ConnectionGuard`): it holds at most
``max_connections``, and cuts a connection that has not sent a complete request
``request_timeout`` seconds after it opened or after its last answer (slow headers, a
slow body, an idle keep-alive). At the cap, the oldest connection that is not being
answered makes room for the newcomer, so a flood of silent sockets cannot lock a probe
out; when every connection held is being answered, the newcomer is closed at once.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

#: Returns the readiness report; its ``ready`` key is the verdict.
Readiness = Callable[[], Awaitable[dict[str, Any]]]

#: Longest a connection may take to send a complete request, s.
REQUEST_TIMEOUT = 5.0
#: accept() failures that mean the process or the system is out of descriptors or memory.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_RETRY_DELAY = 1.0
_ACCEPTS_PER_WAKEUP = 32


def make_app(readiness: Readiness, *middlewares: Middleware) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def readyz(_: web.Request) -> web.Response:
        report = await readiness()
        return web.json_response(report, status=200 if report["ready"] else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(middlewares=middlewares)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve_health(
    readiness: Readiness,
    port: int,
    host: str = "127.0.0.1",
    *,
    max_connections: int = 64,
    request_timeout: float = REQUEST_TIMEOUT,
) -> tuple[web.AppRunner, int]:
    """Start the endpoints; return the runner (for cleanup) and the bound port (``port=0`` picks one).

    The runner's one site is a :class:`HealthSite`, whose ``guard`` counts the connections.
    """
    guard = ConnectionGuard(max_connections, request_timeout)
    runner = web.AppRunner(
        make_app(readiness, guard.middleware),
        access_log=None,
        keepalive_timeout=request_timeout,
        lingering_time=request_timeout,
    )
    await runner.setup()
    site = HealthSite(runner, host, port, guard)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site.port


class HealthSite(web.BaseSite):
    """The health port's listener: it accepts connections itself, so its guard decides which are held."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self.guard = guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port once started (the one asked for before)."""
        return self._port

    async def start(self) -> None:
        await super().start()
        listener = await _listen(self._host, self._port, self._backlog)
        self._port = int(listener.getsockname()[1])
        server = self._runner.server
        assert server is not None, "the runner is set up before its site starts"
        self.guard.listen(listener, server)

    async def stop(self) -> None:
        self.guard.close()
        await super().stop()


class ConnectionGuard:
    """Counts, caps and times the health port's connections.

    A connection is *waiting* from the moment it opens, and again after each answer,
    until a complete request has arrived; it is then *busy* until it is answered. Only a
    waiting connection has a deadline, and only a waiting one is pushed out at the cap.
    """

    def __init__(self, max_connections: int, request_timeout: float) -> None:
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.peak = self.timed_out = self.evicted = self.refused = 0  # peak: most connections held at once
        self._open: set[_Connection] = set()
        self._leaving: set[_Connection] = set()  # cut, descriptor not closed yet
        self._waiting: dict[_Connection, None] = {}  # oldest first
        self._by_transport: dict[asyncio.BaseTransport, _Connection] = {}
        self._pending: set[asyncio.Task[Any]] = set()
        self._listener: socket.socket | None = None
        self._handler_factory: Callable[[], asyncio.Protocol] = asyncio.Protocol

    @property
    def open(self) -> int:
        """Connections whose descriptor is open right now."""
        return len(self._open)

    def listen(self, listener: socket.socket, handler_factory: Callable[[], asyncio.Protocol] | None = None) -> None:
        """Accept on ``listener`` from now on; each held connection feeds a protocol from ``handler_factory``."""
        self._listener = listener
        self._handler_factory = handler_factory or self._handler_factory
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting; the runner's shutdown then closes the connections still open."""
        if self._listener is None:
            return
        asyncio.get_running_loop().remove_reader(self._listener.fileno())
        self._listener.close()
        self._listener = None
        for task in self._pending:
            task.cancel()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A request reached the app, so its connection sent it whole: no deadline until it is answered."""
        conn = self._by_transport.get(request.transport) if request.transport is not None else None
        if conn is None:
            return await handler(request)
        self._unwait(conn)
        try:
            return await handler(request)
        finally:
            if conn in self._open and conn not in self._leaving:
                self._wait(conn)

    def made(self, conn: _Connection, transport: asyncio.BaseTransport) -> asyncio.Protocol:
        """A held connection is up: the aiohttp protocol that will read it."""
        self._by_transport[transport] = conn
        return self._handler_factory()

    def forget(self, conn: _Connection) -> None:
        """The connection's descriptor is closed (or was never set up): its slot is free."""
        self._unwait(conn)
        self._open.discard(conn)
        self._leaving.discard(conn)
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)

    def _accept(self) -> None:
        """The listener is readable: take what is pending, never holding more than the cap."""
        assert self._listener is not None
        if len(self._open) >= self.max_connections and (self._leaving or self._evict()):
            return  # the pending one is taken once the cut descriptors are closed: the listener wakes us again
        for _ in range(_ACCEPTS_PER_WAKEUP):
            if len(self._open) >= self.max_connections and self._waiting:
                return  # room is made only on a wakeup, when a connection is known to be pending
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._pause_accepting()
                return
            if len(self._open) >= self.max_connections:
                self.refused += 1
                sock.close()  # every held connection is being answered: none may be pushed out
            else:
                self._take(sock)

    def _take(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        conn = _Connection(self)
        self._open.add(conn)
        self.peak = max(self.peak, len(self._open))
        self._wait(conn)
        task = loop.create_task(loop.connect_accepted_socket(lambda: conn, sock))
        self._pending.add(task)
        task.add_done_callback(lambda done: self._set_up(done, conn, sock))

    def _set_up(self, task: asyncio.Task[Any], conn: _Connection, sock: socket.socket) -> None:
        self._pending.discard(task)
        if task.cancelled() or task.exception() is not None:
            sock.close()
            self.forget(conn)

    def _wait(self, conn: _Connection) -> None:
        """(Re)start the connection's wait for a complete request; it becomes the newest waiting one."""
        self._unwait(conn)
        self._waiting[conn] = None
        conn.deadline = asyncio.get_running_loop().call_later(self.request_timeout, self._cut, conn, True)

    def _unwait(self, conn: _Connection) -> None:
        self._waiting.pop(conn, None)
        if conn.deadline is not None:
            conn.deadline.cancel()
            conn.deadline = None

    def _evict(self) -> bool:
        """Cut the oldest waiting connection to make room; False when every connection is busy."""
        oldest = next(iter(self._waiting), None)
        if oldest is None:
            return False
        self.evicted += 1
        self._cut(oldest)
        return True

    def _cut(self, conn: _Connection, expired: bool = False) -> None:
        self.timed_out += 1 if expired else 0
        self._unwait(conn)
        self._leaving.add(conn)
        conn.cut()

    def _pause_accepting(self) -> None:
        """Out of descriptors: pause rather than spin on a listener that stays readable."""
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._listener.fileno())
        loop.call_later(_ACCEPT_RETRY_DELAY, self._resume_accepting)

    def _resume_accepting(self) -> None:
        if self._listener is not None:
            self.listen(self._listener)


class _Connection(asyncio.Protocol):
    """One held connection: hands everything to aiohttp's protocol, and can be cut at any time."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.transport: asyncio.Transport | None = None
        self.handler: asyncio.Protocol | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.leaving = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.leaving:  # cut before it was even set up
            self.transport.abort()
            return
        self.handler = self.guard.made(self, transport)
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.handler is not None else None

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        if self.handler is not None:
            self.handler.connection_lost(exc)

    def cut(self) -> None:
        """Close at once, unsent data and all: a client that does not read must not keep it open."""
        self.leaving = True
        if self.transport is not None:
            self.transport.abort()


async def _listen(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking listening socket on the first address ``host`` resolves to."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _, _, _, address = infos[0]
    sock = socket.create_server(address, family=family, backlog=backlog)  # SO_REUSEADDR, closed if bind fails
    sock.setblocking(False)
    return sock
