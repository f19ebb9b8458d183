"""The plugin manager: built from settings by a factory, and a typed façade over its hooks.

Built-in plugins are entry points of the ``videoworker`` distribution itself, loaded by
the same ``load_setuptools_entrypoints`` call as third-party ones. When the package is
run from a source tree without being installed, the same built-ins are registered by
module name instead, under the same names.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy
import structlog

from videoworker import hookspecs, metrics
from videoworker.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from videoworker.config import Settings
    from videoworker.contract.request import VideoRequest
    from videoworker.plugins.types import JobEvent, OutputFile, StoredOutput
    from videoworker.provider.catalogue import Catalogue

log = structlog.get_logger("videoworker.plugins")

#: name → module of every built-in plugin (also declared as entry points in pyproject.toml).
BUILTIN_PLUGINS = {
    "capabilities": "videoworker.default_plugins.capabilities",
    "local": "videoworker.default_plugins.local",
}
#: Built-ins that settings cannot disable: without them money could be spent on nonsense.
ESSENTIAL_PLUGINS = frozenset({"capabilities"})
EVENT_HOOK_TIMEOUT = 30.0


def make_plugin_manager(settings: Settings, *, extra: dict[str, object] | None = None) -> pluggy.PluginManager:
    """A fresh manager: specs, blocked names, entry points, built-ins, then ``extra`` (tests)."""
    pm = pluggy.PluginManager(hookspecs.NAME)
    pm.add_hookspecs(hookspecs)
    for name in settings.disabled_plugins:
        if name in ESSENTIAL_PLUGINS:
            raise ConfigError(f"disabled_plugins: plugin {name!r} is essential and cannot be disabled")
        pm.set_blocked(name)
    try:
        pm.load_setuptools_entrypoints(hookspecs.NAME)
        for name, module in BUILTIN_PLUGINS.items():
            if pm.get_plugin(name) is None and not pm.is_blocked(name):
                pm.register(importlib.import_module(module), name=name)
        for name, plugin in (extra or {}).items():
            pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} is invalid: {exc}") from None
    if os.environ.get("VIDEOWORKER_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda text: log.debug("hook", trace=text.rstrip()))
        pm.enable_tracing()
    return pm


def describe_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """What ``videoworker plugins`` prints: name, module, distribution, version and hooks."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        dist: Any = dists.get(id(plugin))
        rows.append(
            {
                "name": name,
                "module": getattr(plugin, "__name__", type(plugin).__name__),
                "distribution": dist.project_name if dist else "videoworker",
                "version": dist.version if dist else _own_version(),
                "builtin": name in BUILTIN_PLUGINS,
                "hooks": sorted(h.name for h in (pm.get_hookcallers(plugin) or [])),
            }
        )
    return rows


class Hooks:
    """The only caller of ``pm.hook``: typed, awaited, and isolating where the spec says so."""

    def __init__(self, pm: pluggy.PluginManager, settings: Settings) -> None:
        self.pm = pm
        self.settings = settings
        self.plugin_errors = 0

    def validate_request(self, request: VideoRequest, catalogue: Catalogue) -> None:
        self.pm.hook.videoworker_validate_request(request=request, catalogue=catalogue, settings=self.settings)

    async def store_output(self, request: VideoRequest, output: OutputFile) -> list[StoredOutput]:
        """Run every storage plugin in registration order (built-ins first), one at a time."""
        kwargs: dict[str, Any] = {"request": request, "output": output, "settings": self.settings}
        stored = []
        for impl in self.pm.hook.videoworker_store_output.get_hookimpls():
            # created only when it is awaited: a failure leaves no other plugin's coroutine dangling
            result = await _await_maybe(impl.function(*(kwargs[arg] for arg in impl.argnames)))
            if result is not None:
                stored.append(result)
        return stored

    async def job_event(self, event: JobEvent) -> None:
        """Call every observer on its own: a failure or hang is logged and counted, never raised."""
        impls = self.pm.hook.videoworker_job_event.get_hookimpls()
        await asyncio.gather(*(self._observe(impl, event) for impl in impls))

    async def _observe(self, impl: pluggy.HookImpl, event: JobEvent) -> None:
        kwargs = {"event": event, "settings": self.settings}
        try:
            result = impl.function(*(kwargs[arg] for arg in impl.argnames))
            async with asyncio.timeout(EVENT_HOOK_TIMEOUT):
                await _await_maybe(result)
        except Exception as exc:  # noqa: BLE001 - an observer never fails a job
            self.plugin_errors += 1
            metrics.PLUGIN_ERRORS.labels(plugin=impl.plugin_name, hook="videoworker_job_event").inc()
            log.error(
                "plugin failed on a job event; the job goes on",
                plugin=impl.plugin_name,
                status=event.status,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def startup(self) -> None:
        for result in self.pm.hook.videoworker_startup(settings=self.settings):
            await _await_maybe(result)

    async def shutdown(self) -> None:
        for impl in self.pm.hook.videoworker_shutdown.get_hookimpls():
            try:
                await _await_maybe(impl.function(*({"settings": self.settings}[a] for a in impl.argnames)))
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                log.error("plugin failed to shut down", plugin=impl.plugin_name, error=str(exc))


async def _await_maybe(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _own_version() -> str:
    try:
        return metadata.version("videoworker")
    except metadata.PackageNotFoundError:
        from videoworker import __version__

        return __version__


__all__ = ["BUILTIN_PLUGINS", "ESSENTIAL_PLUGINS", "Hooks", "describe_plugins", "make_plugin_manager"]
