"""Health endpoints for supervisors: ``/healthz`` (alive), ``/readyz`` (taking work), ``/metrics``.

The server knows nothing of the daemon: it is given a readiness function whose answer
it serves, 200 when ``ready`` is true and 503 (with the reasons) otherwise, so an
orchestrator can see a broker outage or a paused intake.

The port may face a network, so it is a :class:`~videoworker.serving.GuardedServer`: a
capped number of connections, each with a deadline to send its request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.web_request import BaseRequest
from aiohttp.web_response import Response, StreamResponse, json_response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from videoworker.serving import REQUEST_TIMEOUT, GuardedServer, Handler

#: Returns the readiness report; its ``ready`` key is the verdict.
Readiness = Callable[[], Awaitable[dict[str, Any]]]

_READ = frozenset({"GET", "HEAD"})


def endpoints(readiness: Readiness) -> Handler:
    """The handler of the three paths: GET or HEAD only, anything else 404 or 405."""

    async def healthz() -> Response:
        return json_response({"alive": True})

    async def readyz() -> Response:
        report = await readiness()
        return json_response(report, status=200 if report["ready"] else 503)

    async def metrics() -> Response:
        return Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    routes = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}

    async def handle(request: BaseRequest) -> StreamResponse:
        route = routes.get(request.path)
        if route is None:
            return Response(status=404, text="404: Not Found")
        if request.method not in _READ:
            return Response(status=405, text="405: Method Not Allowed", headers={"Allow": "GET, HEAD"})
        return await route()

    return handle


async def serve_health(
    readiness: Readiness,
    port: int,
    host: str = "127.0.0.1",
    *,
    max_connections: int = 64,
    request_timeout: float = REQUEST_TIMEOUT,
) -> GuardedServer:
    """Start the endpoints on ``host:port`` (``port=0`` picks one: see the server's ``port``)."""
    server = GuardedServer(endpoints(readiness), max_connections=max_connections, request_timeout=request_timeout)
    await server.start(host, port)
    return server
