"""The running daemon: wires the parts together, starts them in order, and stops them cleanly.

Start: plugins' settings checked, plugins' startup, ledger, engine, adoption of
unfinished jobs, outbox relay, lease renewal and notification delivery, broker,
consumer. Stop (SIGTERM/SIGINT): intake closes, in-flight submits get
``shutdown_grace`` seconds, leases are released so a restart or a peer adopts the jobs
at once, everything closes. Unfinished work stays in the ledger; unacked deliveries go
back to the queue. No logic of its own lives here: see :mod:`videoworker.core`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import structlog
from aiohttp import web

from videoworker.amqp.broker import Broker
from videoworker.amqp.consumer import Consumer
from videoworker.config import Settings, redact_url
from videoworker.core.engine import Engine
from videoworker.core.gate import IntakeGate
from videoworker.core.intake import Intake
from videoworker.core.notifier import Notifier
from videoworker.core.ownership import Leases
from videoworker.errors import ConfigError
from videoworker.health import serve_health
from videoworker.ledger import open_ledger
from videoworker.ledger.outbox import OutboxRelay
from videoworker.plugins.hooks import Hooks
from videoworker.plugins.manager import describe_plugins, make_plugin_manager
from videoworker.provider.catalogue import CatalogueCache
from videoworker.provider.client import OpenRouterClient

log = structlog.get_logger("videoworker.runtime")

_LEDGER_PING_TIMEOUT = 2.0


class Daemon:
    """One instance of the worker. ``await Daemon(settings).run()`` runs until a stop signal.

    ``plugins`` registers extra plugin objects by name, after the installed ones (for tests
    and embedding).
    """

    def __init__(self, settings: Settings, *, plugins: dict[str, object] | None = None) -> None:
        if settings.openrouter_api_key is None:
            raise ConfigError(
                "openrouter_api_key is not set: export OPENROUTER_API_KEY (or VIDEOWORKER_OPENROUTER_API_KEY, "
                "or a systemd credential named openrouter_api_key)"
            )
        self.settings = settings
        self.pm = make_plugin_manager(settings, extra=plugins)
        if not self.pm.hook.videoworker_store_output.get_hookimpls():
            raise ConfigError("disabled_plugins: no storage plugin is left; enable `local` or install another")
        self.hooks = Hooks(self.pm, settings)
        self.hooks.check_settings()
        self.ledger = open_ledger(settings.effective_ledger_url)
        self.client = OpenRouterClient(
            settings.openrouter_base_url,
            settings.openrouter_api_key.get_secret_value(),
            connect_timeout=settings.http_connect_timeout,
            read_timeout=settings.http_read_timeout,
            # one connection per concurrent step: httpx's pool scans every connection per request
            max_connections=settings.max_concurrent_submits
            + settings.max_concurrent_polls
            + settings.max_concurrent_downloads
            + 4,
        )
        self.broker = Broker(settings)
        self.outbox = OutboxRelay(self.ledger, self.broker, settings.instance_id, settings.lease_seconds)
        self.gate = IntakeGate(settings.max_inflight, self.ledger, self._consume)
        self.catalogue = CatalogueCache(self.client, settings.models_cache_seconds)
        self.notifier = Notifier(settings, self.ledger, self.hooks)
        self.engine = Engine(
            settings,
            self.ledger,
            self.client,
            self.hooks,
            on_outbox=self.outbox.wake,
            on_notify=self.notifier.wake,
            on_load=self.gate.on_load,
            catalogue=self.catalogue,
        )
        self.leases = Leases(settings, self.ledger, self.engine)
        intake = Intake(
            settings, self.ledger, self.hooks, self.catalogue, self.engine, on_ledger_error=self.gate.ledger_down
        )
        self.consumer = Consumer(settings, self.broker, intake)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        self.health_port: int | None = None
        self._health: web.AppRunner | None = None

    @property
    def paused(self) -> bool:
        """True while intake is paused on purpose (at ``max_inflight``, or while the ledger fails)."""
        return self.gate.paused

    async def run(self) -> None:
        """Run until :meth:`request_stop` (or SIGTERM/SIGINT when installed)."""
        s = self.settings
        log.info(
            "starting",
            instance=s.instance_id,
            ledger=redact_url(s.effective_ledger_url),
            openrouter=s.openrouter_base_url,
            queue=s.request_queue,
            plugins=[p["name"] for p in describe_plugins(self.pm)],
        )
        await self.hooks.startup()
        try:  # from here on, whatever fails, plugins are shut down and everything opened is closed
            await self.ledger.open()
            if s.health_port is not None:
                self._health, self.health_port = await serve_health(self.readiness, s.health_port)
                log.info("health endpoints up", port=self.health_port)
            await self._serve()
        finally:
            await self._shutdown()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

    def request_stop(self, why: str = "requested") -> None:
        if not self._stop.is_set():
            log.info("stopping: intake closes, unfinished jobs stay in the ledger", signal=why)
            self._stop.set()

    async def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` reports: broker up, consumer registered (or paused on purpose), ledger answering."""
        try:
            async with asyncio.timeout(_LEDGER_PING_TIMEOUT):
                await self.ledger.get("__readyz__")
            ledger = True
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            ledger = False
        broker = self.broker.connected
        intake = self.broker.consuming or self.paused
        return {
            "ready": bool(self.ready.is_set() and broker and intake and ledger),
            "broker_connected": broker,
            "consuming": self.broker.consuming,
            "intake_paused": self.paused,
            "ledger": ledger,
            "jobs": self.engine.load,
            "instance": self.settings.instance_id,
        }

    async def _serve(self) -> None:
        self.engine.start()
        await self.leases.adopt(at_start=True)
        self._tasks = [
            asyncio.create_task(self.outbox.run()),
            asyncio.create_task(self.leases.run()),
            asyncio.create_task(self.notifier.run()),
        ]
        await self.broker.connect()
        self.gate.live = True
        await self.gate.sync()
        self.ready.set()
        log.info("ready", jobs=self.engine.load)
        await self._stop.wait()

    async def _shutdown(self) -> None:
        self.ready.clear()
        await self.gate.close()
        await self.broker.stop_consuming()
        await self.engine.stop(self.settings.shutdown_grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.broker.connected:
            # one last pass, after the relay loop is gone so no row is published twice
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.outbox.flush()
        with contextlib.suppress(Exception):
            log.info("leases released", jobs=await self.leases.release())
        await self.broker.close()
        if self._health is not None:
            await self._health.cleanup()
        await self.hooks.shutdown()
        await self.client.aclose()
        await self.ledger.close()
        log.info("stopped")

    async def _consume(self, on: bool) -> None:
        if on and not self.broker.consuming:
            await self.broker.start_consuming(self.consumer.handle)
        elif not on and self.broker.consuming:
            await self.broker.stop_consuming()
