"""Several small connection pools in place of one large one, each request sent through the least busy.

httpcore looks at every connection of a pool on each request (to drop expired ones),
so a request through one pool of ninety connections costs ninety of those checks: in
a 1,000-job run that was a sixth of the daemon's CPU. Pools of :data:`POOL_SIZE` keep
the check short, and sending each request to the pool with the fewest requests in flight
means a pool is never asked for more connections than it has while the total is within
``connections``. Every pool is a plain :class:`httpx.AsyncClient` made by the caller, so
timeouts, auth, headers and error types are exactly httpx's.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

#: Connections per pool.
POOL_SIZE = 16


class Pools:
    """``make(size)`` builds one client limited to ``size`` connections; enough are made for ``connections``."""

    def __init__(self, make: Callable[[int], httpx.AsyncClient], connections: int, *, size: int = POOL_SIZE) -> None:
        count = max(1, math.ceil(connections / size))
        self._clients = [make(math.ceil(connections / count)) for _ in range(count)]
        self._busy = [0] * count

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def clients(self) -> tuple[httpx.AsyncClient, ...]:
        return tuple(self._clients)

    @contextlib.asynccontextmanager
    async def stream(self, method: str, url: str, **options: Any) -> AsyncIterator[httpx.Response]:
        """:meth:`httpx.AsyncClient.stream` on the pool with the fewest requests in flight."""
        index = min(range(len(self._busy)), key=self._busy.__getitem__)
        self._busy[index] += 1
        try:
            async with self._clients[index].stream(method, url, **options) as response:
                yield response
        finally:
            self._busy[index] -= 1

    async def aclose(self) -> None:
        """Close every pool, even when closing one fails (the first error is raised after)."""
        errors: list[BaseException] = []
        for client in self._clients:
            try:
                await client.aclose()
            except Exception as exc:  # noqa: BLE001 - the other pools still close
                errors.append(exc)
        if errors:
            raise errors[0]
