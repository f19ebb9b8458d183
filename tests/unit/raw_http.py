"""A raw HTTP/1.1 test server for the provider client's transport tests: every byte on the wire is the test's.

Shared by ``test_provider_transport.py`` and ``test_provider_transport_faults.py``. A
handler is ``async (server, n, reader, writer)``, ``n`` counting connections from 1; a
handler still running when the test ends is cancelled quietly by :func:`serving`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

JOB = {"id": "gen-vid-1-abcdefghij", "status": "pending"}

Handler = Callable[["Server", int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def answer(status: int, body: bytes, *headers: str, reason: str = "X") -> bytes:
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", "Content-Type: application/json", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def job_answer(job: Mapping[str, str] = JOB) -> bytes:
    return answer(200, json.dumps(job).encode())


class Server:
    """Counts connections, keeps each request head and body, answers with ``handle``."""

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.connections = 0
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.go = asyncio.Event()  # a test's signal to a waiting handler
        self.tasks: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        # CancelledError too: a handler still waiting when the test ends is stopped quietly (see ``serving``)
        quiet = (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError)
        with contextlib.suppress(*quiet):
            await self.handle(self, self.connections, reader, writer)
        writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        self.bodies.append(await reader.readexactly(length))
        self.heads.append(head)
        return head


@contextlib.asynccontextmanager
async def serving(
    handle: Handler, *, rcvbuf: int | None = None, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Server, str]]:
    """A server on a free loopback port, and its API base URL (https with ``tls``)."""
    server = Server(handle)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf is not None:  # inherited by accepted sockets: a server that reads nothing fills up fast
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind(("127.0.0.1", 0))
    listener = await asyncio.start_server(server._serve, sock=sock, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        try:
            yield server, f"{'https' if tls else 'http'}://127.0.0.1:{port}/api/v1"
        finally:  # before the listener closes: from Python 3.12 its wait_closed() waits for every connection
            for task in server.tasks:
                task.cancel()
            await asyncio.gather(*server.tasks, return_exceptions=True)


async def linger() -> None:
    """Keep a connection open, saying nothing more, until the test ends (``serving`` cancels this)."""
    await asyncio.Event().wait()


async def keep_answering(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request on the connection with :data:`JOB`, keeping it alive."""
    while True:
        await server.read_request(reader)
        writer.write(job_answer())
        await writer.drain()


async def hang(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the request, never answer."""
    await server.read_request(reader)
    await linger()
