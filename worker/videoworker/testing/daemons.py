"""In-process daemons for tests: started with real settings, waited on until ready, always stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from videoworker.config import Settings
from videoworker.runtime import Daemon


class DaemonStarter:
    """``d = await starter(**setting_overrides)`` runs a daemon until :meth:`stop_all`.

    ``plugins`` registers extra plugin objects by name; ``plugin_config`` gives the
    ``[plugins.<name>]`` sections (the ``plugins`` setting).
    """

    def __init__(self, make_settings: Callable[..., Settings], *, ready_timeout: float = 30.0) -> None:
        self._make_settings = make_settings
        self._ready_timeout = ready_timeout
        self.running: list[tuple[Daemon, asyncio.Task[None]]] = []

    async def __call__(
        self, plugins: dict[str, object] | None = None, plugin_config: dict[str, Any] | None = None, **overrides: Any
    ) -> Daemon:
        if plugin_config is not None:
            overrides["plugins"] = plugin_config
        daemon = Daemon(self._make_settings(**overrides), plugins=plugins)
        task = asyncio.create_task(daemon.run())
        self.running.append((daemon, task))
        async with asyncio.timeout(self._ready_timeout):
            while not daemon.ready.is_set():
                if task.done():
                    task.result()  # the start failed: raise its error here
                await asyncio.sleep(0.02)
        return daemon

    async def stop_all(self, timeout: float = 30.0) -> None:
        """Stop every daemon started here, as SIGTERM would, and wait for each to finish."""
        for daemon, _ in self.running:
            daemon.request_stop("test teardown")
        for _, task in self.running:
            await asyncio.wait_for(task, timeout)
        self.running.clear()
