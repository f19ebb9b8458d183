"""An HTTP server for a port that may face a network: aiohttp's low-level server behind a guard.

No client may take the daemon's file descriptors with it (1,021 half-sent requests once
left the process unable to open any socket), so the server accepts connections itself
(:class:`ConnectionGuard`): at most ``max_connections``, each cut if its request head is
not in ``request_timeout`` seconds after it opened or after its last answer. A body, read
with :meth:`GuardedServer.read_body`, gets a deadline of its own, the same length. At the
cap, the oldest connection that has not sent its request whole (head or body) makes room,
so silent or trickling sockets cannot lock a probe or a callback out; when every
connection held is being answered, the newcomer is closed at once. A body left unread
after the answer is not drained: the connection closes.

Why not ``aiohttp.web``: one to three paths need no application, router or middleware,
and it costs 2.2 MiB of resident memory to import against 0.4 MiB for the low-level
server (aiohttp's client is loaded anyway, for the provider transport).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_server import Server

#: Answers one request whose head arrived whole.
Handler = Callable[[BaseRequest], Awaitable[StreamResponse]]

#: Longest a connection may take to send a complete request head, s.
REQUEST_TIMEOUT = 5.0
#: aiohttp's shutdown waits this long for requests being answered, then as long again for
#: their cancelled handlers; both fit in the 0.2 s the daemon's stop gives each server, s.
SHUTDOWN_TIMEOUT = 0.05
#: A body's read answers 408 at its deadline; the guard cuts the connection this much later if it has not ended.
_CUT_GRACE = 1.0
_BACKLOG = 128
#: accept() failures that mean the process or the system is out of descriptors or memory.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_RETRY_DELAY = 1.0
_ACCEPTS_PER_WAKEUP = 32


class BodyTooLarge(Exception):
    """The request's body is longer than the handler takes."""


class GuardedServer:
    """Serves ``handler`` on one listening socket; :attr:`guard` decides which connections are held."""

    def __init__(self, handler: Handler, *, max_connections: int, request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.guard = ConnectionGuard(max_connections, request_timeout)
        self._handler = handler
        self._server: Server | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (``0`` picks a port) and return the bound port."""
        # lingering_time=0: an answered request's unread body is not drained, the connection closes
        server = Server(self._answer, access_log=None, keepalive_timeout=self.guard.request_timeout, lingering_time=0)
        listener = await _listen(host, port)
        self._server = server
        self.port = int(listener.getsockname()[1])
        self.guard.listen(listener, server)
        return self.port

    async def close(self) -> None:
        """Stop accepting, close idle connections, give requests being answered a moment, then cut all.

        The cut runs even when the caller's own time limit cancels the wait, so no
        connection or handler outlives the stop.
        """
        self.guard.close()
        server, self._server = self._server, None
        try:
            if server is not None:
                await asyncio.sleep(0)  # connections accepted just now start their request first
                server.pre_shutdown()
                await server.shutdown(SHUTDOWN_TIMEOUT)
        finally:
            self.guard.cut_all()

    async def read_body(self, request: BaseRequest, limit: int) -> bytes:
        """The whole body: :class:`BodyTooLarge` past ``limit`` bytes (an announced length before a
        byte is read), ``TimeoutError`` ``request_timeout`` s after the head. Meanwhile the
        connection may be pushed out at the cap, and is cut shortly after that deadline."""
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge
        if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn = self.guard.answering(request.transport)
        self.guard.answered(conn, grace=_CUT_GRACE)  # not sent whole yet: evictable, with a deadline
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.guard.request_timeout):
                async for chunk in request.content.iter_any():
                    size += len(chunk)
                    if size > limit:
                        raise BodyTooLarge
                    chunks.append(chunk)
        finally:
            self.guard.answering(request.transport)
        return b"".join(chunks)

    async def _answer(self, request: BaseRequest) -> StreamResponse:
        conn = self.guard.answering(request.transport)
        try:
            return await self._handler(request)
        finally:
            self.guard.answered(conn)


class ConnectionGuard:
    """Counts, caps and times a port's connections.

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
        """Stop accepting; the server's shutdown then closes the connections still open."""
        if self._listener is None:
            return
        asyncio.get_running_loop().remove_reader(self._listener.fileno())
        self._listener.close()
        self._listener = None
        for task in self._pending:
            task.cancel()

    def answering(self, transport: asyncio.BaseTransport | None) -> _Connection | None:
        """A request's head arrived whole: its connection has no deadline until :meth:`answered`."""
        conn = self._by_transport.get(transport) if transport is not None else None
        if conn is not None:
            self._unwait(conn)
        return conn

    def answered(self, conn: _Connection | None, *, grace: float = 0.0) -> None:
        """The answer went out (or a body is still due): the connection waits, with a deadline, evictable."""
        if conn is not None and conn in self._open and conn not in self._leaving:
            self._wait(conn, grace)

    def cut_all(self) -> None:
        """Close every connection held at once (the end of a stop)."""
        for conn in list(self._open):
            if conn not in self._leaving:
                self._cut(conn)

    def made(self, conn: _Connection, transport: asyncio.BaseTransport) -> asyncio.Protocol:
        """A held connection is up: the server's protocol that will read it."""
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

    def _wait(self, conn: _Connection, grace: float = 0.0) -> None:
        """(Re)start the connection's wait for a complete request; it becomes the newest waiting one."""
        self._unwait(conn)
        self._waiting[conn] = None
        conn.deadline = asyncio.get_running_loop().call_later(self.request_timeout + grace, self._cut, conn, True)

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
    """One held connection: hands everything to the server's protocol, and can be cut at any time."""

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


async def _listen(host: str, port: int) -> socket.socket:
    """A non-blocking listening socket on the first address ``host`` resolves to."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _, _, _, address = infos[0]
    sock = socket.create_server(address, family=family, backlog=_BACKLOG)  # SO_REUSEADDR, closed if bind fails
    sock.setblocking(False)
    return sock
