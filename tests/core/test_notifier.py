"""Durable notifications without a broker: recorded with the move, delivered in order, retried, given up, replayed.

A notifier plugin owes every event to its targets; the real SQLite ledger holds the rows
and the real delivery loop works through them, so what is tested here is the mechanism
the webhook and Slack plugins rely on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.core.conftest import Rig
from videoworker import JobEvent, Notification, NotifyError, NotifyTarget, hookimpl
from videoworker.core.states import JobState
from videoworker.testing.recorder import until

RigFactory = Callable[..., Awaitable[Rig]]


class Receiver:
    """A notifier plugin whose targets are names; each target can be made to fail, hang or refuse."""

    def __init__(self, *targets: str) -> None:
        self.targets = targets or ("main",)
        self.delivered: list[tuple[str, str, str, int]] = []  # (target, request id, status, attempt)
        self.attempts: list[tuple[str, float]] = []  # (notification id, when)
        self.failing: dict[str, NotifyError] = {}
        self.hanging: set[str] = set()

    @hookimpl
    def videoworker_notification_targets(self, event: JobEvent) -> list[NotifyTarget]:
        return [NotifyTarget(t, {"name": t}) for t in self.targets]

    @hookimpl
    async def videoworker_notify(self, notification: Notification) -> None:
        target = notification.target.key
        self.attempts.append((notification.id, time.monotonic()))
        if target in self.hanging:
            await asyncio.Event().wait()
        if target in self.failing:
            raise self.failing[target]
        event = notification.event
        self.delivered.append((target, event.request_id, event.status, notification.attempt))

    def statuses(self, target: str, request_id: str) -> list[str]:
        return [s for t, r, s, _ in self.delivered if t == target and r == request_id]


async def owed(r: Rig, request_id: str, target: str = "main") -> list[str]:
    """The statuses the ledger owes ``target`` for ``request_id``, in order (a quick job may skip in_progress)."""
    rows = await r.ledger.list_notifications(request_id=request_id)
    return [n.status for n in sorted(rows, key=lambda n: n.id or 0) if n.target_key == target]


async def accept(r: Rig, request_id: str, **fields: Any) -> None:
    job = await r.claim(request_id, **fields)
    r.engine.accept(job.record, job.request)


async def test_every_event_is_owed_and_delivered_in_order(rig: RigFactory) -> None:
    """Each status change records a row per target with the move; the loop delivers them in order."""
    receiver = Receiver("a", "b")
    r = await rig(plugins={"rx": receiver})
    await accept(r, "n-1")
    await r.final("n-1")
    expected = await owed(r, "n-1", "b")
    assert expected[0] == "submitted" and expected[-1] == "completed"
    await until(lambda: receiver.statuses("b", "n-1") == expected, 10, "every event at target b")
    assert receiver.statuses("a", "n-1") == expected
    rows = await r.ledger.list_notifications(request_id="n-1")
    assert {(n.target_key, n.state) for n in rows} == {("a", "delivered"), ("b", "delivered")}
    assert all(n.stable_id == f"n-1:{n.status}:rx:{n.target_key}" for n in rows)


async def test_a_failing_receiver_is_retried_no_sooner_than_it_asked_and_in_order(rig: RigFactory) -> None:
    """While a target refuses, nothing later for that request overtakes; once it recovers everything arrives."""
    receiver = Receiver()
    receiver.failing["main"] = NotifyError("busy", retry_after=0.3)
    r = await rig(plugins={"rx": receiver})
    await accept(r, "n-retry")
    await r.final("n-retry")  # the job does not wait for its notifications
    await until(lambda: len(receiver.attempts) >= 2, 10, "a retry")
    first, second = receiver.attempts[0][1], receiver.attempts[1][1]
    assert second - first >= 0.3
    assert {nid for nid, _ in receiver.attempts} == {"n-retry:submitted:rx:main"}  # later events wait their turn
    del receiver.failing["main"]
    expected = await owed(r, "n-retry")
    await until(lambda: receiver.statuses("main", "n-retry") == expected, 15, "every notification, in order")
    assert receiver.delivered[0][3] >= 2  # the first one arrived on a later attempt


async def test_a_refused_notification_is_dead_and_can_be_replayed(rig: RigFactory) -> None:
    """NotifyError(retryable=False) gives up at once; a replay delivers it later, with the same id."""
    receiver = Receiver()
    receiver.failing["main"] = NotifyError("gone", retryable=False)
    r = await rig(plugins={"rx": receiver})
    r.sim.configure(job_seconds=[1.0, 1.2])  # a poll sees it running, so in_progress is owed too (even under load)
    await accept(r, "n-dead")
    await r.final("n-dead")

    async def dead() -> list[Any]:
        return [n for n in await r.ledger.list_notifications(state="dead") if n.request_id == "n-dead"]

    expected = await owed(r, "n-dead")
    await until(lambda: _count(dead, len(expected)), 10, "every notification dead")
    assert all(n.last_error == "gone" and n.attempts == 1 for n in await dead())
    del receiver.failing["main"]
    assert await r.ledger.replay_notifications(None, deadline=time.time() + 60) == 3
    r.notifier.wake()
    await until(lambda: len(receiver.statuses("main", "n-dead")) == 3, 10, "the replayed notifications")
    assert {nid for nid, _ in receiver.attempts} == {
        f"n-dead:{s}:rx:main" for s in ("submitted", "in_progress", "completed")
    }


async def test_a_notification_is_dead_once_notify_retry_hours_have_passed(rig: RigFactory) -> None:
    """A receiver that keeps failing is given up after the retry window, and the reason is kept."""
    receiver = Receiver()
    receiver.failing["main"] = NotifyError("503 from the receiver")
    r = await rig(plugins={"rx": receiver}, notify_retry_hours=0.5 / 3600)
    await accept(r, "n-late")
    await r.final("n-late")

    async def all_dead() -> bool:
        rows = await r.ledger.list_notifications(request_id="n-late")
        return len(rows) >= 2 and all(n.state == "dead" for n in rows)

    await until(all_dead, 15, "every notification dead after the window")
    rows = await r.ledger.list_notifications(request_id="n-late")
    assert all(n.last_error == "503 from the receiver" for n in rows)


async def test_a_hanging_receiver_blocks_neither_the_job_nor_another_target(rig: RigFactory) -> None:
    """A target that never answers is cut off by notify_timeout; the job finishes and the other target is served."""
    receiver = Receiver("slow", "fast")
    receiver.hanging.add("slow")
    r = await rig(plugins={"rx": receiver}, notify_timeout=0.5)
    await accept(r, "n-hang")
    assert (await r.final("n-hang")).state is JobState.DONE
    expected = await owed(r, "n-hang", "fast")
    await until(lambda: receiver.statuses("fast", "n-hang") == expected, 10, "the fast target's notifications")
    await until(lambda: sum(1 for nid, _ in receiver.attempts if nid.endswith(":slow")) >= 2, 10, "a timed-out retry")
    pending = await r.ledger.list_notifications(request_id="n-hang", state="pending")
    (first,) = [n for n in pending if n.target_key == "slow" and n.status == "submitted"]
    assert "no answer within notify_timeout" in (first.last_error or "")


async def test_a_target_never_has_more_deliveries_at_once_than_notify_concurrency(rig: RigFactory) -> None:
    """Many owed notifications to one target are delivered at most notify_concurrency at a time."""
    in_flight, peak = 0, 0

    class Slow(Receiver):
        @hookimpl
        async def videoworker_notify(self, notification: Notification) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.05)
            in_flight -= 1
            self.delivered.append(("main", notification.event.request_id, notification.event.status, 1))

    receiver = Slow()
    r = await rig(plugins={"rx": receiver}, notify_concurrency=2)
    for i in range(8):
        await accept(r, f"n-many-{i}")
    for i in range(8):
        await r.final(f"n-many-{i}")

    async def all_delivered() -> bool:
        rows = await r.ledger.list_notifications(limit=1000)
        return all(n.state == "delivered" for n in rows) and len(receiver.delivered) == len(rows)

    await until(all_delivered, 20, "every notification")
    assert len(receiver.delivered) >= 16  # at least submitted and completed of each job
    assert peak == 2


async def _count(rows: Callable[[], Awaitable[list[Any]]], n: int) -> bool:
    return len(await rows()) == n
