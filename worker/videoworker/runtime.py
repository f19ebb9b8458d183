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
import sys
from collections.abc import Coroutine
from typing import Any

import structlog

from videoworker.amqp.broker import Broker
from videoworker.amqp.consumer import Consumer
from videoworker.callbacks.hints import HintRouter
from videoworker.callbacks.receiver import CallbackReceiver
from videoworker.config import Settings, redact_url
from videoworker.core.engine import Engine
from videoworker.core.gate import IntakeGate
from videoworker.core.intake import Intake
from videoworker.core.notifier import Notifier
from videoworker.core.ownership import Leases
from videoworker.core.retention import Pruner
from videoworker.core.schedule import Deadline, let_go_tasks_end
from videoworker.errors import ConfigError
from videoworker.health import serve_health
from videoworker.ledger import open_ledger
from videoworker.ledger.outbox import OutboxRelay
from videoworker.logs import register_settings_secrets
from videoworker.plugins.hooks import Hooks
from videoworker.plugins.manager import describe_plugins, make_plugin_manager
from videoworker.provider.catalogue import CatalogueCache
from videoworker.provider.client import OpenRouterClient
from videoworker.provider.untrusted import ProviderLimits
from videoworker.serving import GuardedServer
from videoworker.systemd import ServiceManager

log = structlog.get_logger("videoworker.runtime")

#: What stopping may take beyond shutdown_grace, seconds (the bound is grace + 2 s; this leaves room to exit).
STOP_MARGIN = 1.6

_LEDGER_PING_TIMEOUT = 2.0

#: The interpreter's thread switch interval while the daemon runs, seconds (Python's is 5 ms).
#: The event loop gives up the GIL at each system call (a socket send, a poll of its
#: sockets), and when a worker thread (the SQLite writer, a storage copy) takes it then, the
#: loop waits for that thread's interval to run out before it can go on. At a completion
#: wave of 100 jobs a second, that made each turn of the loop take 60-100 ms, and results
#: waited 0.5-1.3 s (p50) for their event to be published. At 0.5 ms: 0.16-0.55 s, for the
#: same CPU (docs/benchmarks.md, fifth round).
SWITCH_INTERVAL = 0.0005


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
        # the last line of defence: any of these values that still reaches a log line is masked
        register_settings_secrets(settings, self.hooks.declared_models("videoworker_settings_model"))
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
            limits=ProviderLimits.from_settings(settings),
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
        self.pruner = Pruner(settings, self.ledger)
        intake = Intake(
            settings, self.ledger, self.hooks, self.catalogue, self.engine, on_ledger_error=self.gate.ledger_down
        )
        self.consumer = Consumer(settings, self.broker, intake)
        self.systemd = ServiceManager()
        secret = settings.openrouter_webhook_secret
        self.hints = HintRouter(settings, self.ledger, self.broker, self.engine)
        self.callbacks = (
            CallbackReceiver(self.hints.on_callback, secret=secret.get_secret_value() if secret else None)
            if settings.callback_public_url
            else None
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        self.health_port: int | None = None
        self._health: GuardedServer | None = None

    @property
    def paused(self) -> bool:
        """True while intake is paused on purpose (at ``max_inflight``, or while the ledger fails)."""
        return self.gate.paused

    async def run(self) -> None:
        """Run until :meth:`request_stop` (or SIGTERM/SIGINT when installed)."""
        previous = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        try:
            await self._run()
        finally:
            sys.setswitchinterval(previous)

    async def _run(self) -> None:
        s = self.settings
        log.info(
            "starting",
            instance=s.instance_id,
            ledger=redact_url(s.effective_ledger_url),
            openrouter=redact_url(s.openrouter_base_url),
            queue=s.request_queue,
            plugins=[p["name"] for p in describe_plugins(self.pm)],
        )
        await self.hooks.startup()
        try:  # from here on, whatever fails, plugins are shut down and everything opened is closed
            await self._until_stopped(self._serve())
        finally:
            await self._shutdown()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

    def request_stop(self, why: str = "requested") -> None:
        if not self._stop.is_set():
            log.info("stopping: intake closes, unfinished jobs stay in the ledger", signal=why)
            self.systemd.stopping()
            self._stop.set()

    async def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` reports: broker up, consumer registered (or paused on purpose), ledger answering.

        The instance's name (by default ``<hostname>-<pid>``) is left out unless ``health_show_identity``
        is set: the port may face a network, and host names and pids help whoever maps it.
        """
        try:
            async with asyncio.timeout(_LEDGER_PING_TIMEOUT):
                await self.ledger.get("__readyz__")
            ledger = True
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            ledger = False
        broker = self.broker.connected
        intake = self.broker.consuming or self.paused
        report: dict[str, Any] = {
            "ready": bool(self.ready.is_set() and broker and intake and ledger),
            "broker_connected": broker,
            "consuming": self.broker.consuming,
            "intake_paused": self.paused,
            "ledger": ledger,
            "jobs": self.engine.load,
        }
        if self.settings.health_show_identity:
            report["instance"] = self.settings.instance_id
        return report

    def status(self) -> str:
        """One line for ``systemctl status``: jobs in flight and what intake is doing."""
        if self.gate.paused:
            intake = "paused (" + ", ".join(sorted(self.gate.holds)) + ")"
        elif self.broker.consuming:
            intake = "consuming"
        else:
            intake = "waiting for the broker"
        return f"{self.engine.load} jobs in flight; intake {intake}"

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` until it ends or a stop is requested, whichever comes first.

        Starting can wait for a long time (RabbitMQ down, the ledger locked); a stop must
        not: it cancels whatever start step is waiting, and the shutdown follows at once.
        """
        serving = asyncio.create_task(work)
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (serving, stopping):
                task.cancel()
            await asyncio.gather(stopping, return_exceptions=True)
        if not serving.cancelled():
            with contextlib.suppress(asyncio.CancelledError):
                await serving  # raises what the start raised (a refused ledger, a bad queue)

    async def _serve(self) -> None:
        s = self.settings
        await self.ledger.open()
        if s.health_port is not None:
            self._health = await serve_health(
                self.readiness, s.health_port, s.health_host, max_connections=s.health_max_connections
            )
            self.health_port = self._health.port
            log.info("health endpoints up", port=self.health_port)
        self.engine.start()
        await self.leases.adopt(at_start=True)
        await self.engine.sweep()
        if self.callbacks is not None:
            await self.callbacks.start(s.callback_host, s.callback_port)
        self._tasks = [
            asyncio.create_task(self.outbox.run()),
            asyncio.create_task(self.leases.run()),
            asyncio.create_task(self.notifier.run()),
            asyncio.create_task(self.pruner.run()),
        ]
        await self.broker.connect()
        if self.callbacks is not None:
            await self.hints.start()
        self.gate.live = True
        await self.gate.sync()
        self.ready.set()
        log.info("ready", jobs=self.engine.load)
        self.systemd.ready(self.status())
        self._tasks.append(asyncio.create_task(self.systemd.run(self.status)))
        await self._stop.wait()

    async def _shutdown(self) -> None:
        """Stop within ``shutdown_grace`` + 2 s whatever the state: each step gets what is left, then is let go.

        In-flight submits get the grace to record their answer; what follows (a last outbox
        pass, releasing leases, closing the broker, plugins and the ledger) shares the rest.
        A step that cannot finish (the broker or the ledger unreachable, a plugin hanging)
        is logged and abandoned: what it would have written is still owed in the ledger.
        """
        stop = Deadline(self.settings.shutdown_grace + STOP_MARGIN)
        self.ready.clear()
        await self.gate.close()
        await stop.step("stop consuming", self.broker.stop_consuming(), cap=0.5)
        if self.callbacks is not None:
            await stop.step("stop the callback receiver", self.callbacks.stop(), cap=0.2)
            await stop.step("stop forwarding hints", self.hints.stop(), cap=0.1)
        await self.engine.stop(self.settings.shutdown_grace)
        await stop.step("record held results", self.engine.record_held(), cap=0.3)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # one last pass, after the relay loop is gone so no row is published twice
        await stop.step("last outbox pass", self.outbox.drain(), cap=0.6)
        # a step or delivery let go while its thread works on keeps its lease: no peer does it beside that
        busy, held = self.engine.busy(), self.notifier.busy()
        release = self.leases.release(keep_jobs=busy, keep_notifications=held, hold=stop.left + 1.0)
        released = await stop.step("release leases", release, cap=0.4)
        if released is not None:
            log.info("leases released", jobs=released)
        await stop.step("close the broker connection", self.broker.close(), cap=0.3)
        if self._health is not None:
            await stop.step("stop the health server", self._health.close(), cap=0.2)
        await stop.step("steps held by their threads", let_go_tasks_end(), cap=max(0.0, stop.left - 1.2))
        await stop.step("plugins' shutdown", self.hooks.shutdown(), cap=0.5)
        await stop.step("close the HTTP client", self.client.aclose(), cap=0.2)
        await stop.step("close the ledger", self.ledger.close(), cap=0.5)
        log.info("stopped")

    async def _consume(self, on: bool) -> None:
        if on and not self.broker.consuming:
            await self.broker.start_consuming(self.consumer.handle)
        elif not on and self.broker.consuming:
            await self.broker.stop_consuming()
