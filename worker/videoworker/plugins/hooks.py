"""The typed façade over the hooks: the only caller of plugin code, so every call is awaited and traced.

Implementations run one at a time in pluggy's documented order (``tryfirst`` first,
then the most recently registered, ``trylast`` last). Each may be ``async def``: its
coroutine is awaited. With ``trace_plugins`` (``VIDEOWORKER_TRACE_PLUGINS=1``) every call
is logged with the plugin, the hook, the time it took and how it ended.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import TYPE_CHECKING, Any

import pluggy
import structlog
from pydantic import BaseModel

from videoworker import metrics
from videoworker.errors import InvalidRequest, NotifyError, PluginError, StorageError
from videoworker.plugins.settings import delivery_options, plugin_settings
from videoworker.plugins.types import CostEstimate, NotifyTarget, StoredOutput

if TYPE_CHECKING:
    from videoworker.config import Settings
    from videoworker.contract.request import VideoRequest
    from videoworker.plugins.types import JobEvent, Notification, OutputFile
    from videoworker.provider.catalogue import Catalogue

log = structlog.get_logger("videoworker.plugins")


class Hooks:
    """One typed, awaited method per hook."""

    def __init__(self, pm: pluggy.PluginManager, settings: Settings) -> None:
        self.pm = pm
        self.settings = settings
        self.plugin_errors = 0
        self._delivery_models: dict[str, type[BaseModel]] | None = None

    async def validate_request(self, request: VideoRequest, catalogue: Catalogue) -> None:
        """Run every validator; the first :class:`~videoworker.InvalidRequest` refuses the request."""
        hook = "videoworker_validate_request"
        for impl in self._impls(hook):
            await self._call(hook, impl, request=request, catalogue=catalogue, settings=self.settings)

    async def store_output(self, request: VideoRequest, output: OutputFile) -> list[StoredOutput]:
        """Run every storage plugin in call order; the first location returned is the primary one."""
        stored = []
        hook = "videoworker_store_output"
        for impl in self._impls(hook):
            result = await self._call(hook, impl, request=request, output=output, settings=self.settings)
            if result is None:
                continue
            if not isinstance(result, StoredOutput):
                raise StorageError(f"plugin {impl.plugin_name!r} returned {type(result).__name__}, not StoredOutput")
            stored.append(result)
        return stored

    async def cost_estimate(self, request: VideoRequest, catalogue: Catalogue) -> CostEstimate | None:
        """The largest estimate any plugin gives, with the smallest daily limit any names (None: no plugin spoke)."""
        hook = "videoworker_cost_estimate"
        found = [
            e
            for impl in self._impls(hook)
            if (e := await self._call(hook, impl, request=request, catalogue=catalogue, settings=self.settings))
        ]
        if not found:
            return None
        prices = [e.usd for e in found]
        limits = [e.daily_limit_usd for e in found if e.daily_limit_usd is not None]
        return CostEstimate(
            None if None in prices else max(p for p in prices if p is not None), min(limits, default=None)
        )

    async def notification_targets(self, event: JobEvent) -> list[tuple[str, NotifyTarget]]:
        """Every notifier's targets for ``event``, as (plugin name, target) pairs, in call order."""
        hook = "videoworker_notification_targets"
        found: list[tuple[str, NotifyTarget]] = []
        for impl in self._impls(hook):
            try:
                targets = await self._call(hook, impl, event=event, settings=self.settings) or []
                if not all(isinstance(t, NotifyTarget) for t in targets):
                    raise PluginError("returned something that is not a NotifyTarget")
            except Exception as exc:  # noqa: BLE001 - a notifier's bug must not stop the job's move
                self._plugin_failed(impl.plugin_name, hook, exc, status=event.status)
                continue
            found += [(impl.plugin_name, target) for target in targets]
        return found

    async def notify(self, plugin: str, notification: Notification) -> None:
        """Deliver one notification through ``plugin``'s own ``videoworker_notify``; raise what it raises."""
        hook = "videoworker_notify"
        impl = next((i for i in self._impls(hook) if i.plugin_name == plugin), None)
        if impl is None:
            raise NotifyError(f"plugin {plugin!r} is not loaded here, or has no videoworker_notify")
        await self._call(hook, impl, notification=notification, settings=self.settings)

    def check_settings(self) -> None:
        """Validate every plugin's ``[plugins.<name>]`` section against its declared model; ConfigError names it."""
        for name, model in self.declared_models("videoworker_settings_model").items():
            plugin_settings(self.settings, name, model)

    def check_delivery(self, request: VideoRequest) -> None:
        """Validate the request's ``delivery`` options: every key names a loaded plugin, whose model accepts it."""
        if not request.delivery:
            return
        if self._delivery_models is None:
            self._delivery_models = self.declared_models("videoworker_delivery_model")
        loaded = {name for name, plugin in self.pm.list_name_plugin() if plugin is not None}
        for name in request.delivery:
            if name not in loaded:
                raise InvalidRequest(f"delivery.{name}: no plugin named {name!r} is loaded", field=f"delivery.{name}")
            model = self._delivery_models.get(name)
            if model is not None:
                delivery_options(request.delivery, name, model)

    def declared_models(self, hook: str) -> dict[str, type[BaseModel]]:
        """Plugin name → the model each plugin declares through ``hook`` (settings or delivery models)."""
        models: dict[str, type[BaseModel]] = {}
        for impl in self._impls(hook):
            model = impl.function()
            if model is None:
                continue
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise PluginError(f"plugin {impl.plugin_name!r}: {hook} must return a pydantic model class")
            models[impl.plugin_name] = model
        return models

    async def job_event(self, event: JobEvent) -> None:
        """Call every observer on its own: a failure or hang is logged and counted, never raised."""
        await asyncio.gather(*(self._observe(impl, event) for impl in self._impls("videoworker_job_event")))

    async def startup(self) -> None:
        """Let plugins open clients and check settings; a :class:`~videoworker.ConfigError` stops the start."""
        for impl in self._impls("videoworker_startup"):
            await self._call("videoworker_startup", impl, settings=self.settings)

    async def shutdown(self) -> None:
        """Let plugins close what they opened; failures are logged and the stop goes on."""
        for impl in self._impls("videoworker_shutdown"):
            try:
                await self._call("videoworker_shutdown", impl, settings=self.settings)
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                log.error("plugin failed to shut down", plugin=impl.plugin_name, error=str(exc))

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        # get_hookimpls() lists implementations in the reverse of the order pluggy calls them
        return list(reversed(getattr(self.pm.hook, hook).get_hookimpls()))

    async def _call(self, hook: str, impl: pluggy.HookImpl, **kwargs: Any) -> Any:
        """Call one implementation with the arguments it asks for, and await it if it is async."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            result = impl.function(*(kwargs[arg] for arg in impl.argnames))
            if inspect.isawaitable(result):
                result = await result
            return result
        except BaseException as exc:
            outcome = type(exc).__name__
            raise
        finally:
            if self.settings.trace_plugins:
                ms = round((time.perf_counter() - started) * 1000, 2)
                log.info("hook call", hook=hook, plugin=impl.plugin_name, ms=ms, outcome=outcome)

    async def _observe(self, impl: pluggy.HookImpl, event: JobEvent) -> None:
        try:
            async with asyncio.timeout(self.settings.observer_timeout):
                await self._call("videoworker_job_event", impl, event=event, settings=self.settings)
        except Exception as exc:  # noqa: BLE001 - an observer never fails a job
            self._plugin_failed(impl.plugin_name, "videoworker_job_event", exc, status=event.status)

    def _plugin_failed(self, plugin: str, hook: str, exc: Exception, **context: object) -> None:
        """Log and count a plugin failure that the job must not feel."""
        self.plugin_errors += 1
        metrics.PLUGIN_ERRORS.labels(plugin=plugin, hook=hook).inc()
        error = f"{type(exc).__name__}: {exc}"
        log.error("plugin failed; the job goes on", plugin=plugin, hook=hook, error=error, **context)
