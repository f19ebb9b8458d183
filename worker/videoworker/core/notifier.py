"""Durable notifications: delivering what the ledger says each notifier plugin is owed, at least once.

The recorder writes one ledger row per (event, plugin, target) in the same transaction
as the status change, so a crash can delay a notification but never lose it. This loop
leases due rows, hands each to its plugin's ``videoworker_notify``, and records the end:
delivered, retried later (exponential backoff with jitter, never sooner than the
plugin's ``retry_after``), or dead once ``notify_retry_hours`` have passed or the plugin
says retrying cannot help. A row is marked delivered only after the plugin returned, so
a SIGKILL mid-delivery means a repeat, never a loss.

Each target has its own concurrency limit and the ledger hands out at most that many
of its rows at a time, so a slow or dead receiver never holds up another, and nothing
here ever waits for a job, or a job for it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally

import structlog

from videoworker import metrics
from videoworker.config import Settings
from videoworker.core.crashpoints import crashpoint
from videoworker.core.schedule import backoff, cancel_and_wait, wait_or_time_out
from videoworker.errors import NotifyError
from videoworker.ledger.base import Ledger, OwedNotification
from videoworker.plugins.hooks import Hooks
from videoworker.plugins.types import JobEvent, Notification, NotifyTarget

log = structlog.get_logger("videoworker.notifier")

#: Longest wait between two looks at the ledger when nothing wakes the loop, seconds.
IDLE = 1.0
#: How often the pending gauge is refreshed from the ledger, seconds.
GAUGE_EVERY = 15.0
#: Longest backoff between two attempts of one delivery, seconds.
MAX_BACKOFF = 600.0


class Notifier:
    """One delivery loop per instance; instances share the ledger's rows through leases."""

    def __init__(self, settings: Settings, ledger: Ledger, hooks: Hooks) -> None:
        self.settings = settings
        self.ledger = ledger
        self.hooks = hooks
        self.me = settings.instance_id
        self._inflight: Tally[tuple[str, str]] = Tally()
        self._slots: dict[tuple[str, str], asyncio.Semaphore] = {}
        self._tasks: dict[asyncio.Task[None], int] = {}  # deliveries in flight, and the row each delivers
        self._changed = asyncio.Event()
        self._gauged = 0.0
        self.failures = 0

    def wake(self) -> None:
        """New rows were recorded: look at the ledger now rather than at the next idle tick."""
        self._changed.set()

    async def run(self) -> None:
        """Claim and deliver until cancelled; ledger trouble is logged and retried, never fatal."""
        try:
            while True:
                self._changed.clear()
                try:
                    await self.fill()
                    await self._gauge()
                    self.failures = 0
                except Exception as exc:  # noqa: BLE001 - the ledger may be briefly unavailable
                    self.failures += 1
                    log.warning("notification queue unavailable; retrying", error=f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(backoff(self.failures, base=0.5, cap=15))
                    continue
                await wait_or_time_out(self._changed, IDLE)
        finally:
            await self.stop()

    async def fill(self) -> int:
        """Lease as many due rows as there is room for and start delivering them; return how many."""
        room = self.settings.notify_max_inflight - len(self._tasks)
        if room <= 0:
            return 0
        limit = self.settings.notify_concurrency
        busy = [key for key, n in self._inflight.items() if n >= limit]
        # the lease outlives a whole delivery even when a row first waits for its target's slot
        until = time.time() + 2 * self.settings.notify_timeout + self.settings.lease_seconds
        rows = await self.ledger.claim_notifications(self.me, until, room, per_target=limit, busy=busy)
        for row in rows:
            self._inflight[(row.plugin, row.target_key)] += 1
            task = asyncio.create_task(self._deliver(row))
            self._tasks[task] = row.id or 0
            task.add_done_callback(self._done)
        return len(rows)

    def busy(self) -> set[int]:
        """Rows whose delivery still runs: after :meth:`stop`, those it let go while their thread works on."""
        return set(self._tasks.values())

    async def stop(self) -> None:
        """Cancel deliveries in flight; their rows stay pending and are delivered again later."""
        await cancel_and_wait(list(self._tasks))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._changed.set()

    async def _deliver(self, row: OwedNotification) -> None:
        key = (row.plugin, row.target_key)
        slot = self._slots.setdefault(key, asyncio.Semaphore(self.settings.notify_concurrency))
        try:
            async with slot:
                await self._attempt(row)
        finally:
            self._inflight[key] -= 1
            if self._inflight[key] <= 0:
                del self._inflight[key]
                self._slots.pop(key, None)

    async def _attempt(self, row: OwedNotification) -> None:
        assert row.id is not None
        attempt = row.attempts + 1
        with structlog.contextvars.bound_contextvars(
            request_id=row.request_id, plugin=row.plugin, target=row.target_key
        ):
            try:
                async with asyncio.timeout(self.settings.notify_timeout):
                    await self.hooks.notify(row.plugin, _notification(row, attempt))
            except Exception as exc:  # noqa: BLE001 - whatever a notifier raises is one failed attempt
                await self._failed(row, attempt, exc)
                return
            crashpoint("after_notify")
            if await self.ledger.settle_notification(row.id, self.me, state="delivered", attempts=attempt):
                metrics.NOTIFICATIONS.labels(plugin=row.plugin, outcome="delivered").inc()
                metrics.NOTIFY_LATENCY.labels(plugin=row.plugin).observe(max(0.0, time.time() - row.created_at))
                log.info("notification delivered", status=row.status, attempt=attempt)
            else:
                log.warning("notification delivered after its lease was lost; it may be delivered again")

    async def _failed(self, row: OwedNotification, attempt: int, exc: Exception) -> None:
        assert row.id is not None
        retryable = not isinstance(exc, NotifyError) or exc.retryable
        reason = _reason(exc, self.settings.notify_timeout)
        wait = max(_retry_after(exc), backoff(attempt, base=self.settings.retry_backoff_base, cap=MAX_BACKOFF))
        if retryable and time.time() + wait < row.deadline:
            state, outcome = "pending", "retry"
            log.warning("notification failed; retrying", reason=reason, attempt=attempt, retry_in=round(wait, 2))
        else:
            state, outcome, wait = "dead", "dead", 0.0
            gave_up = "the receiver cannot take it" if not retryable else "notify_retry_hours have passed"
            log.error(
                "notification given up; replay it with `videoworker notifications replay`",
                reason=reason,
                why=gave_up,
                attempt=attempt,
                notification_id=row.id,
            )
        metrics.NOTIFICATIONS.labels(plugin=row.plugin, outcome=outcome).inc()
        next_at = time.time() + wait
        await self.ledger.settle_notification(
            row.id, self.me, state=state, attempts=attempt, next_at=next_at, error=reason
        )

    async def _gauge(self) -> None:
        if time.monotonic() - self._gauged < GAUGE_EVERY:
            return
        self._gauged = time.monotonic()
        for plugin, states in (await self.ledger.notification_counts()).items():
            metrics.NOTIFICATIONS_PENDING.labels(plugin=plugin).set(states.get("pending", 0))


def _notification(row: OwedNotification, attempt: int) -> Notification:
    event = JobEvent(
        row.status,
        row.request_id,
        row.event.get("payload", {}),
        row.event.get("delivery", {}),
        row.event.get("prompt"),
    )
    return Notification(row.stable_id, event, NotifyTarget(row.target_key, row.target), attempt, row.created_at)


def _retry_after(exc: Exception) -> float:
    value = exc.retry_after if isinstance(exc, NotifyError) else None
    return max(0.0, float(value)) if value is not None else 0.0


def _reason(exc: Exception, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within notify_timeout={timeout:g}s"
    text = exc.message if isinstance(exc, NotifyError) else f"{type(exc).__name__}: {exc}"
    return text[:500]
