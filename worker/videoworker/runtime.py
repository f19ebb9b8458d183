"""The running daemon: wires settings to ledger, client, plugins, broker and engine, and stops cleanly.

Start order: plugins' startup, ledger, adoption of unfinished jobs, broker, consumer.
Stop order (SIGTERM/SIGINT): stop intake, give in-flight submits ``shutdown_grace``
seconds, release every lease so a restart or a peer adopts the jobs at once, close.
Unfinished work stays in the ledger; unacked deliveries go back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import structlog
from aiohttp import web

from videoworker.amqp.broker import Broker
from videoworker.config import Settings, redact_url
from videoworker.core.engine import Engine
from videoworker.core.intake import Intake
from videoworker.errors import ConfigError
from videoworker.health import serve_health
from videoworker.ledger import open_ledger
from videoworker.ledger.base import dead_local_owners
from videoworker.ledger.outbox import OutboxRelay
from videoworker.plugins.manager import Hooks, describe_plugins, make_plugin_manager
from videoworker.provider.catalogue import CatalogueCache
from videoworker.provider.client import OpenRouterClient

log = structlog.get_logger("videoworker.runtime")
_ADOPT_BATCH = 1000


class Daemon:
    """One instance of the worker. ``await Daemon(settings).run()`` runs until a stop signal."""

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
        self.broker = Broker(settings, self._handle)
        self.outbox = OutboxRelay(self.ledger, self.broker, settings.instance_id, settings.lease_seconds)
        self.engine = Engine(
            settings, self.ledger, self.client, self.hooks, on_outbox=self.outbox.wake, on_load=self._on_load
        )
        self.catalogue = CatalogueCache(self.client, settings.models_cache_seconds)
        self.intake = Intake(
            settings,
            self.ledger,
            self.hooks,
            self.catalogue,
            self.broker,
            self.engine,
            on_ledger_error=self._ledger_down,
        )
        self._stop = asyncio.Event()
        self._holds: set[str] = set()  # reasons intake is paused: "capacity", "ledger"
        self._gate_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        self.health_port: int | None = None
        self._health: web.AppRunner | None = None

    @property
    def paused(self) -> bool:
        """True while intake is paused on purpose (at ``max_inflight``, or while the ledger fails)."""
        return bool(self._holds)

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
        await self.ledger.open()
        if s.health_port is not None:
            self._health, self.health_port = await serve_health(self, s.health_port)
            log.info("health endpoints up", port=self.health_port)
        try:
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

    async def _serve(self) -> None:
        self.engine.start()
        await self._adopt(include_self=True)
        self._tasks = [asyncio.create_task(self.outbox.run()), asyncio.create_task(self._leases())]
        await self.broker.connect()
        await self._apply_gate()
        self.ready.set()
        log.info("ready", jobs=self.engine.load)
        await self._stop.wait()

    async def _shutdown(self) -> None:
        self.ready.clear()
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
            released = await self.ledger.release(self.settings.instance_id)
            log.info("leases released", jobs=released)
        await self.broker.close()
        if self._health is not None:
            await self._health.cleanup()
        await self.hooks.shutdown()
        await self.client.aclose()
        await self.ledger.close()
        log.info("stopped")

    async def _handle(self, message: object) -> None:
        await self.intake.handle(message)  # type: ignore[arg-type]

    def _on_load(self, load: int) -> None:
        """Pause intake at ``max_inflight`` jobs; resume below 90 % of it."""
        limit = self.settings.max_inflight
        if load >= limit:
            self._set_hold("capacity", True, jobs=load)
        elif load < max(1, int(limit * 0.9)):
            self._set_hold("capacity", False, jobs=load)

    def _ledger_down(self) -> None:
        """Intake could not write the ledger: stop taking deliveries until it answers again.

        Nacking deliveries one by one would spend their delivery limit and dead-letter
        healthy requests during a long outage; pausing costs each at most one delivery.
        """
        if "ledger" not in self._holds:
            self._set_hold("ledger", True)
            self._tasks.append(asyncio.get_running_loop().create_task(self._await_ledger()))

    async def _await_ledger(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                async with asyncio.timeout(5):
                    await self.ledger.get("__ping__")
            except Exception:  # noqa: BLE001 - still down
                continue
            self._set_hold("ledger", False)
            return

    def _set_hold(self, reason: str, on: bool, **context: object) -> None:
        before = bool(self._holds)
        if on:
            self._holds.add(reason)
        else:
            self._holds.discard(reason)
        if before != bool(self._holds):
            level = log.warning if on else log.info
            level("intake paused" if on else "intake resumed", reason=reason, **context)
            if self.ready.is_set():
                asyncio.get_running_loop().create_task(self._apply_gate())

    async def _apply_gate(self) -> None:
        """Consume exactly when nothing holds intake and the daemon is not stopping."""
        async with self._gate_lock:
            want = not self._holds and not self._stop.is_set()
            if want and not self.broker.consuming:
                await self.broker.start_consuming()
            elif not want and self.broker.consuming:
                await self.broker.stop_consuming()

    async def _leases(self) -> None:
        period = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(period)
            try:
                await self.ledger.renew_leases(self.settings.instance_id, time.time() + self.settings.lease_seconds)
                await self._adopt(include_self=False)
            except Exception as exc:  # noqa: BLE001 - the ledger may be briefly unavailable
                log.error("lease renewal failed", error=f"{type(exc).__name__}: {exc}")

    async def _adopt(self, *, include_self: bool) -> None:
        me = self.settings.instance_id
        if include_self:
            # rows under our own name belong to a former life of this instance (same host and pid)
            await self.ledger.release(me)
        while self.engine.load < self.settings.max_inflight:
            dead = dead_local_owners(await self.ledger.live_owners(), me)
            room = min(_ADOPT_BATCH, self.settings.max_inflight - self.engine.load)
            records = await self.ledger.adopt(me, time.time() + self.settings.lease_seconds, dead, room)
            for record in records:
                self.engine.resume(record)
            if len(records) < room:
                return
