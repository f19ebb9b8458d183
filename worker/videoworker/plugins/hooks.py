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

from videoworker import metrics
from videoworker.errors import StorageError
from videoworker.plugins.types import StoredOutput

if TYPE_CHECKING:
    from videoworker.config import Settings
    from videoworker.contract.request import VideoRequest
    from videoworker.plugins.types import JobEvent, OutputFile
    from videoworker.provider.catalogue import Catalogue

log = structlog.get_logger("videoworker.plugins")


class Hooks:
    """One typed, awaited method per hook."""

    def __init__(self, pm: pluggy.PluginManager, settings: Settings) -> None:
        self.pm = pm
        self.settings = settings
        self.plugin_errors = 0

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
            self.plugin_errors += 1
            metrics.PLUGIN_ERRORS.labels(plugin=impl.plugin_name, hook="videoworker_job_event").inc()
            log.error(
                "plugin failed on a job event; the job goes on",
                plugin=impl.plugin_name,
                status=event.status,
                error=f"{type(exc).__name__}: {exc}",
            )
