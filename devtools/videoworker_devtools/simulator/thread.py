"""The simulator on its own thread and event loop: :class:`SimulatorThread`.

This module owns running the simulator from synchronous code (tests, the demo,
benchmarks) and the small admin client (stats, configure, reset) that goes with it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Self

import httpx

from videoworker_devtools.simulator.app import ADMIN_PREFIX, API_PREFIX, bound_port, serve
from videoworker_devtools.simulator.config import SimConfig


class SimulatorThread:
    """The simulator on its own thread and event loop, for synchronous tests and benchmarks.

    ``with SimulatorThread(SimConfig(job_seconds=(0.1, 0.2))) as sim: ...`` starts it on a
    free port of 127.0.0.1; ``sim.base_url`` is the OpenRouter base URL to give a client.
    """

    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SimConfig()
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._serving = False
        self._failure: OSError | None = None
        self._http: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}{API_PREFIX}"

    @property
    def admin_url(self) -> str:
        return f"{self.url}{ADMIN_PREFIX}"

    @property
    def api_key(self) -> str:
        return self.config.api_key

    def start(self) -> Self:
        """Start serving; returns once the port is bound (raises if it could not be)."""
        self._thread = threading.Thread(target=self._run, name="videoworker-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30.0):
            raise RuntimeError("simulator did not start within 30 s")
        if not self._serving:
            raise RuntimeError(f"simulator failed to start on {self.host}:{self.port}") from self._failure
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; safe to call twice."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is not None and thread.is_alive() and loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=30.0)
        self._thread = None
        if self._http is not None:
            self._http.close()
            self._http = None

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``."""
        return self._admin("GET", "stats")

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """``POST /_sim/config`` with ``knobs``; returns the effective config."""
        answer = self._admin("POST", "config", knobs)
        if "api_key" in knobs:
            self.config = self.config.with_changes({"api_key": answer["api_key"]})
        return answer

    def reset(self) -> None:
        """``POST /_sim/reset``: forget jobs and counters."""
        self._admin("POST", "reset")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _admin(self, method: str, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if self._http is None:
            self._http = httpx.Client(timeout=30.0)
        response = self._http.request(method, f"{self.admin_url}/{name}", json=body)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        finally:
            self._serving = False
            self._ready.set()  # wakes start() even when serving failed

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            runner = await serve(self.host, self.port, self.config)
        except OSError as exc:  # port taken, bad host: start() reports it
            self._failure = exc
            return
        try:
            self.port = bound_port(runner)
            self._serving = True
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
