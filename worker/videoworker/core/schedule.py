"""When to look at a job next: one timer heap for every owned job, backoff, and shared deadlines.

Ten thousand jobs waiting on the provider cost ten thousand heap entries, not tasks.
Where in time the polls go is :mod:`videoworker.core.polling`'s job.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

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


#: How long a stop waits for tasks it cancelled; one whose thread is still working
#: (:func:`videoworker.run_in_thread`) is let go and ends in the background.
LET_GO = 0.25


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], let_go: float = LET_GO) -> int:
    """Cancel ``tasks`` and wait up to ``let_go`` seconds for them to end; return how many are still running.

    A cancelled task normally ends at once. One that waits for a thread cannot, and an
    unbounded wait for it would eat the stop's budget for recording what is held, the last
    outbox pass and the release of leases. What such a task later raises is retrieved, not
    reported as never retrieved.
    """
    pending = set(tasks)
    for task in pending:
        task.cancel()
    if not pending:
        return 0
    done, left = await asyncio.wait(pending, timeout=let_go)
    for task in (*done, *left):
        task.add_done_callback(_retrieve)
    if left:
        log.warning("tasks still running after the stop cancelled them; let go", tasks=len(left))
        _LET_GO_TASKS.update(left)
        for task in left:
            task.add_done_callback(_LET_GO_TASKS.discard)
    return len(left)


_LET_GO_TASKS: set[asyncio.Task[Any]] = set()


async def let_go_tasks_end() -> None:
    """Wait until every task :func:`cancel_and_wait` let go has ended (the caller bounds the wait).

    The stop waits here before plugins shut down, so a hook's thread does not find its
    plugin's client closed under it.
    """
    loop = asyncio.get_running_loop()
    while mine := {task for task in _LET_GO_TASKS if task.get_loop() is loop}:
        await asyncio.wait(mine)
    _LET_GO_TASKS.difference_update({task for task in _LET_GO_TASKS if task.get_loop().is_closed()})


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


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


async def persist(write: Callable[[], Awaitable[T]], *, what: str, cap: float = 30.0) -> T:
    """Run ``write`` until it does not raise, backing off up to ``cap`` seconds between tries.

    For a record that exists only in memory until it lands (the answer to a POST): a crash
    in between leaves the write-ahead record, which is reported, never lost.
    """
    delay = 0.5
    while True:
        try:
            return await write()
        except Exception as exc:  # noqa: BLE001 - keep trying; the ledger may be briefly unavailable
            log.error(f"could not record {what}; retrying", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)
