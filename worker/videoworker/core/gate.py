"""The intake gate: whether this instance takes new requests right now.

Intake pauses for a reason and resumes when no reason is left: at ``max_inflight``
jobs (resuming below 90 % of it), and while the ledger fails. Pausing during a ledger
outage matters: nacking deliveries one by one would spend their delivery limit and
dead-letter healthy requests; pausing costs each at most one delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from videoworker.ledger.base import Ledger

log = structlog.get_logger("videoworker.gate")

#: How often a paused gate checks whether the ledger answers again, seconds.
LEDGER_PROBE_INTERVAL = 1.0


class IntakeGate:
    """Holds of intake by reason; ``apply(consume)`` starts or stops the consumer to match."""

    def __init__(self, limit: int, ledger: Ledger, apply: Callable[[bool], Awaitable[None]]) -> None:
        self.limit = limit
        self.ledger = ledger
        self._apply = apply
        self._holds: set[str] = set()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.live = False  # apply holds only once the consumer may run at all
        self.closed = False  # stopping: never consume again

    @property
    def paused(self) -> bool:
        """True while intake is paused on purpose (capacity or ledger)."""
        return bool(self._holds)

    @property
    def holds(self) -> frozenset[str]:
        return frozenset(self._holds)

    def on_load(self, load: int) -> None:
        """Pause at ``limit`` jobs; resume below 90 % of it."""
        if load >= self.limit:
            self._set("capacity", True, jobs=load)
        elif load < max(1, int(self.limit * 0.9)):
            self._set("capacity", False, jobs=load)

    def ledger_down(self) -> None:
        """Intake could not write the ledger: hold until it answers again."""
        if "ledger" not in self._holds:
            self._set("ledger", True)
            self._spawn(self._await_ledger())

    async def sync(self) -> None:
        """Consume exactly when nothing holds intake and the daemon is not stopping."""
        async with self._lock:
            await self._apply(self.live and not self.closed and not self._holds)

    async def close(self) -> None:
        self.closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _await_ledger(self) -> None:
        while True:
            await asyncio.sleep(LEDGER_PROBE_INTERVAL)
            try:
                async with asyncio.timeout(5):
                    await self.ledger.get("__ping__")
            except Exception:  # noqa: BLE001 - still down
                continue
            self._set("ledger", False)
            return

    def _set(self, reason: str, on: bool, **context: object) -> None:
        before = bool(self._holds)
        if on:
            self._holds.add(reason)
        else:
            self._holds.discard(reason)
        if before != bool(self._holds):
            level = log.warning if on else log.info
            level("intake paused" if on else "intake resumed", reason=reason, **context)
            if self.live:
                self._spawn(self.sync())

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
