"""Health endpoints for supervisors: ``/healthz`` (alive), ``/readyz`` (taking work), ``/metrics``.

The server knows nothing of the daemon: it is given a readiness function whose answer
it serves, 200 when ``ready`` is true and 503 (with the reasons) otherwise, so an
orchestrator can see a broker outage or a paused intake.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

#: Returns the readiness report; its ``ready`` key is the verdict.
Readiness = Callable[[], Awaitable[dict[str, Any]]]


def make_app(readiness: Readiness) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def readyz(_: web.Request) -> web.Response:
        report = await readiness()
        return web.json_response(report, status=200 if report["ready"] else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve_health(readiness: Readiness, port: int, host: str = "0.0.0.0") -> tuple[web.AppRunner, int]:
    """Start the endpoints; return the runner (for cleanup) and the bound port (``port=0`` picks one)."""
    runner = web.AppRunner(make_app(readiness), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    bound = server.sockets[0].getsockname()[1] if server is not None and server.sockets else port  # type: ignore[attr-defined]
    return runner, int(bound)
