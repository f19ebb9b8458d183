"""When to look at a job next: one timer heap for every owned job, and adaptive poll gaps.

Ten thousand jobs waiting on the provider cost ten thousand heap entries, not tasks. The
poll gap starts near the model's learned duration, stays within
``[poll_interval, poll_max_interval]``, backs off once the job runs late, and carries
jitter so jobs submitted together do not poll together.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections.abc import Awaitable
from typing import TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger("videoworker.schedule")


class Timers:
    """A heap of (due, action, request id) with an awaitable "next due" for one scheduler loop."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._cancelled: set[int] = set()

    def __len__(self) -> int:
        return len(self._heap) - len(self._cancelled)

    def at(self, delay: float, action: str, request_id: str) -> int:
        """Run ``action`` for ``request_id`` in ``delay`` seconds; return the timer's number (to cancel it)."""
        number = next(self._seq)
        entry = (time.monotonic() + max(0.0, delay), number, action, request_id)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:  # only a new earliest timer changes how long the loop sleeps
            self._changed.set()
        return number

    def cancel(self, number: int) -> None:
        """Forget pending timer ``number`` (lazily: it stays in the heap and is skipped when due).

        Only a timer that has not fired yet may be cancelled: the caller keeps track.
        """
        self._cancelled.add(number)

    async def next_due(self) -> tuple[str, str]:
        """Wait for the earliest timer and pop it."""
        while True:
            if self._heap:
                wait = self._heap[0][0] - time.monotonic()
                if wait <= 0:
                    _, number, action, request_id = heapq.heappop(self._heap)
                    if number in self._cancelled:
                        self._cancelled.discard(number)
                        continue
                    return action, request_id
            else:
                wait = None
            self._changed.clear()
            await wait_or_time_out(self._changed, wait)


class PollPlanner:
    """Learns how long each model takes and spaces polls to match."""

    def __init__(self, shortest: float, longest: float, *, jitter: float = 0.2, reconcile: float | None = None) -> None:
        self.shortest = shortest
        self.longest = longest
        self.jitter = jitter
        #: With callbacks on, polls only reconcile: this is their gap once the expected end has passed.
        self.reconcile = reconcile
        self._expected: dict[str, float] = {}

    def learn(self, model: str, seconds: float) -> None:
        """Fold one observed submit-to-completion time into the model's estimate (EWMA)."""
        old = self._expected.get(model)
        self._expected[model] = seconds if old is None else 0.8 * old + 0.2 * seconds

    def expected(self, model: str) -> float | None:
        return self._expected.get(model)

    def next_gap(self, model: str, elapsed: float, polls: int, retry_after: float | None = None) -> float:
        """Seconds until the next poll of a job ``elapsed`` seconds after submit, polled ``polls`` times."""
        expected = self._expected.get(model)
        if self.reconcile is not None:
            return self._reconcile_gap(expected, elapsed, retry_after)
        if expected is not None and elapsed < expected:
            gap = (expected - elapsed) * 0.9 if polls == 0 else (expected - elapsed) / 2
        else:
            # unknown model (or overdue): back off from the shortest gap towards the longest
            overdue = polls if expected is None else max(0, polls - 1)
            gap = self.shortest * (1.5 ** min(overdue, 20))
        gap = min(max(gap, self.shortest), self.longest)
        gap *= 1 + random.uniform(-self.jitter, self.jitter)
        gap = min(max(gap, self.shortest), self.longest)
        if retry_after is not None:
            gap = max(gap, retry_after)
        return gap

    def _reconcile_gap(self, expected: float | None, elapsed: float, retry_after: float | None) -> float:
        """Callbacks on: one poll a margin after the expected end (a callback normally comes first),
        then one every ``reconcile`` seconds, so a lost callback is caught within that interval."""
        assert self.reconcile is not None
        gap = self.reconcile
        if expected is not None and elapsed < expected * 1.25:
            gap = min(gap, expected * 1.25 - elapsed + self.shortest)
        gap *= 1 + random.uniform(0, self.jitter)
        gap = min(max(gap, self.shortest), self.reconcile * (1 + self.jitter))
        return max(gap, retry_after) if retry_after is not None else gap


def backoff(attempt: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Full-jitter exponential backoff (AWS): uniform in [base/2, min(cap, base·2^attempt)]."""
    ceiling = min(cap, base * 2 ** min(max(0, attempt), 32))
    return random.uniform(min(base / 2, ceiling), ceiling)


async def wait_or_time_out(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds (None: for ever); True if it was set.

    ``asyncio.timeout``, not ``wait_for``: in Python 3.11 ``wait_for`` can swallow a
    cancellation that arrives just as the event is set, and the cancelled loop then runs on
    (a stop that never finishes: seen in the notification loop).
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


class Deadline:
    """A time budget shared by several steps: each gets what is left (or less), never more."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    @property
    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    async def step(self, what: str, work: Awaitable[T], *, cap: float) -> T | None:
        """Run ``work`` for at most ``cap`` seconds of what is left; on timeout or error log it and return None."""
        budget = max(0.05, min(cap, self.left))
        try:
            async with asyncio.timeout(budget):
                return await work
        except TimeoutError:
            log.warning("gave up waiting at stop; moving on", step=what, after_s=round(budget, 2))
        except Exception as exc:  # noqa: BLE001 - stopping goes on whatever one step does
            log.warning("failed at stop; moving on", step=what, error=f"{type(exc).__name__}: {exc}")
        return None
