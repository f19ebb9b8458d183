"""An asyncio TCP proxy for fault tests: forward, blackhole (no FIN, no RST), heal, and reset (RST).

``async with TcpProxy(host, port) as proxy:`` listens on ``127.0.0.1:proxy.port`` and
forwards every accepted connection to ``host:port``. While blackholed, bytes read from
either side are dropped and an end-of-stream is held back, so both peers see a silent,
open connection, as with a dead network path. ``reset()`` aborts every connection on
both sides with ``SO_LINGER`` 0, which sends an RST.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from types import TracebackType

_CHUNK = 65536


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.upstream) if w is not None]


class TcpProxy:
    """A TCP forwarder between a client and ``target_host:target_port`` with fault modes."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = 0
        self.connections_total = 0
        self.resets = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    @property
    def blackholed(self) -> bool:
        return not self._flowing.is_set()

    @property
    def connections_open(self) -> int:
        return len(self._links)

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.heal()
        self.reset()
        await self._server.wait_closed()

    def blackhole(self) -> None:
        """Keep every connection open but drop all bytes both ways, now and for new connections."""
        self._flowing.clear()

    def heal(self) -> None:
        """Forward again (a stream that lost bytes while blackholed stays corrupt: ``reset()`` it)."""
        self._flowing.set()

    def reset(self) -> None:
        """Abort every current connection on both sides with an RST."""
        for link in list(self._links):
            self._abort(link)
        self.resets += 1

    def _abort(self, link: _Link) -> None:
        self._links.discard(link)
        for task in link.tasks:
            task.cancel()
        for writer in link.writers():
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            up_reader, link.upstream = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            self._abort(link)
            return
        if link not in self._links:  # reset while connecting
            self._abort(link)
            return
        link.tasks = [
            asyncio.create_task(self._pump(reader, link.upstream, link)),
            asyncio.create_task(self._pump(up_reader, writer, link)),
        ]

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_CHUNK):
                if self._flowing.is_set():
                    writer.write(data)
                    await writer.drain()
        await self._flowing.wait()  # a blackhole hides the close (FIN or RST) too
        if link in self._links:  # one side closed or failed: close both, gracefully
            self._links.discard(link)
            for task in link.tasks:
                if task is not asyncio.current_task():
                    task.cancel()
            for w in link.writers():
                w.close()
