"""Building the plugin manager: entry points loaded one by one, every failure named, then checked.

Every plugin, built-in or not, comes from the ``videoworker`` entry-point group, so the
core never names a plugin module. Each entry point is loaded and registered on its own:
one that fails to import, claims a name another distribution already has, or does not
fit the hook specs stops the start with one line naming the plugin, its entry point and
the error. Hook wrappers are refused, because the host calls each implementation on its
own and awaits it, and a wrapper could not see inside an async one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from videoworker import hookspecs
from videoworker.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from videoworker.config import Settings

#: Built-ins that settings cannot disable: without them money could be spent on nonsense, or past a limit.
ESSENTIAL_PLUGINS = frozenset({"capabilities", "budget"})
#: The distribution whose entry points are the built-ins.
OWN_DISTRIBUTION = "videoworker"


@dataclass(frozen=True)
class Origin:
    """Where a registered plugin came from: its distribution, version and entry point (``name = value``)."""

    distribution: str
    version: str
    entry_point: str

    @property
    def builtin(self) -> bool:
        return self.distribution == OWN_DISTRIBUTION

    def __str__(self) -> str:
        source = f"from {self.distribution} {self.version}".rstrip()
        return f"{self.entry_point}, {source}" if self.entry_point else source


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers each plugin's :class:`Origin`."""

    def __init__(self) -> None:
        super().__init__(hookspecs.NAME)
        self.origins: dict[str, Origin] = {}


def make_plugin_manager(settings: Settings, *, extra: dict[str, object] | None = None) -> PluginManager:
    """A fresh manager: specs, blocked names, installed plugins, then ``extra`` (tests, embedding)."""
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for name in settings.disabled_plugins:
        if name in ESSENTIAL_PLUGINS:
            raise ConfigError(f"disabled_plugins: plugin {name!r} is essential and cannot be disabled")
        pm.set_blocked(name)
    for point in _entry_points():
        if not pm.is_blocked(point.name):
            _register(pm, point.name, _load(point), _origin(point))
    for name, plugin in (extra or {}).items():
        _register(pm, name, plugin, Origin("(passed in)", "", ""))
    for name in sorted(ESSENTIAL_PLUGINS - set(pm.origins)):
        raise PluginError(f"essential plugin {name!r} is not installed: reinstall the videoworker distribution")
    return pm


def describe_plugins(pm: PluginManager) -> list[dict[str, Any]]:
    """What ``videoworker plugins`` prints: name, module, distribution, version, entry point and hooks."""
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        origin = pm.origins.get(name, Origin("(unknown)", "", ""))
        rows.append(
            {
                "name": name,
                "module": getattr(plugin, "__name__", type(plugin).__name__),
                "distribution": origin.distribution,
                "version": origin.version,
                "entry_point": origin.entry_point,
                "builtin": origin.builtin,
                "hooks": sorted(h.name for h in (pm.get_hookcallers(plugin) or [])),
            }
        )
    return rows


def _entry_points() -> list[metadata.EntryPoint]:
    """The group's entry points, refusing a name two distributions claim (a plugin must not replace another)."""
    points = sorted(metadata.entry_points(group=hookspecs.NAME), key=lambda p: p.name)
    for first, second in itertools.pairwise(points):
        if first.name == second.name:
            raise PluginError(
                f"plugin name {first.name!r} is claimed twice: {_describe(first)} and {_describe(second)}; "
                "uninstall one of them"
            )
    return points


def _load(point: metadata.EntryPoint) -> object:
    try:
        return point.load()
    except Exception as exc:  # noqa: BLE001 - any import failure stops the start, named
        raise PluginError(f"plugin {point.name!r} ({_describe(point)}) failed to load: {_error(exc)}") from None


def _register(pm: PluginManager, name: str, plugin: object, origin: Origin) -> None:
    where = f"plugin {name!r} ({origin})"
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginError(f"{where} cannot be registered: {_one_line(exc)}") from None
    for caller in pm.get_hookcallers(plugin) or []:
        problem = _problem(caller, plugin)
        if problem:
            pm.unregister(plugin)
            raise PluginError(f"{where}: {problem}")
    pm.origins[name] = origin


def _problem(caller: pluggy.HookCaller, plugin: object) -> str | None:
    """Why ``plugin``'s implementation of ``caller`` cannot be used, or None."""
    if caller.spec is None:
        return f"{caller.name} is not a videoworker hook (see videoworker.hookspecs)"
    for impl in caller.get_hookimpls():
        if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper):
            return f"{caller.name} is a wrapper; videoworker awaits each implementation on its own"
    return None


def _origin(point: metadata.EntryPoint) -> Origin:
    dist = point.dist
    return Origin(
        dist.name if dist is not None else "(unknown)",
        dist.version if dist is not None else "",
        f"{point.name} = {point.value}",
    )


def _describe(point: metadata.EntryPoint) -> str:
    dist = point.dist
    owner = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {point.name} = {point.value}{owner}"


def _error(exc: BaseException) -> str:
    return _one_line(f"{type(exc).__name__}: {exc}")


def _one_line(text: object) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


__all__ = ["ESSENTIAL_PLUGINS", "Origin", "PluginManager", "describe_plugins", "make_plugin_manager"]
