"""Health endpoints for supervisors: ``/healthz`` (alive), ``/readyz`` (taking work), ``/metrics``.

Readiness means the broker connection is up, the request consumer is registered (or
paused on purpose at ``max_inflight``), and the ledger answers. During a broker outage
``/readyz`` answers 503 with the reason, so an orchestrator can see it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from videoworker.runtime import Daemon

_LEDGER_PING_TIMEOUT = 2.0


async def readiness(daemon: Daemon) -> dict[str, Any]:
    """What ``/readyz`` reports; ``ready`` is the verdict."""
    try:
        async with asyncio.timeout(_LEDGER_PING_TIMEOUT):
            await daemon.ledger.get("__readyz__")
        ledger = True
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        ledger = False
    broker = daemon.broker.connected
    intake = daemon.broker.consuming or daemon.paused
    return {
        "ready": bool(daemon.ready.is_set() and broker and intake and ledger),
        "broker_connected": broker,
        "consuming": daemon.broker.consuming,
        "intake_paused": daemon.paused,
        "ledger": ledger,
        "jobs": daemon.engine.load,
        "instance": daemon.settings.instance_id,
    }


def make_app(daemon: Daemon) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def readyz(_: web.Request) -> web.Response:
        report = await readiness(daemon)
        return web.json_response(report, status=200 if report["ready"] else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve_health(daemon: Daemon, port: int, host: str = "0.0.0.0") -> tuple[web.AppRunner, int]:
    """Start the endpoints; return the runner (for cleanup) and the bound port (``port=0`` picks one)."""
    runner = web.AppRunner(make_app(daemon), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    bound = server.sockets[0].getsockname()[1] if server is not None and server.sockets else port  # type: ignore[attr-defined]
    return runner, int(bound)
