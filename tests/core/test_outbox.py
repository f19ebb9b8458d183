"""The outbox relay with a real ledger and an in-memory publisher: owed events go out once, failures keep them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from tests.core.conftest import Rig
from videoworker.ledger.base import OutboxMessage
from videoworker.testing.recorder import until

RigFactory = Callable[..., Awaitable[Rig]]


def owed(n: int, key: str = "video.submitted") -> list[OutboxMessage]:
    return [OutboxMessage("ex", key, b"{}", f"o-{i}:submitted", f"o-{i}") for i in range(n)]


async def pending(r: Rig) -> int:
    return (await r.ledger.counts())["outbox_pending"]


async def test_flush_publishes_in_order_and_the_next_round_marks_sent(rig: RigFactory) -> None:
    """Every owed message is published once, oldest first; the next round's one write records the confirms."""
    r = await rig()
    await r.ledger.enqueue(owed(5))
    assert await r.relay.flush() == 5
    assert [m.message_id for m in r.publisher.messages] == [f"o-{i}:submitted" for i in range(5)]
    assert await pending(r) == 5  # confirmed, recorded by the next round
    await r.ledger.enqueue(owed(1, "video.completed"))
    assert await r.relay.flush() == 1
    assert len(r.publisher.messages) == 6  # the first five were not leased again
    assert await pending(r) == 1
    assert await r.relay.flush() == 0
    assert await pending(r) == 0


async def test_the_relay_loop_records_confirms_without_waiting_for_more_work(rig: RigFactory) -> None:
    """A round that published anything is followed at once by the round that records it, not by the idle tick."""
    r = await rig()
    await r.ledger.enqueue(owed(3))
    loop = asyncio.create_task(r.relay.run())  # no wake() after this: only the loop itself can start a round
    try:
        await until(lambda: len(r.publisher.messages) == 3, 5, "the owed messages")

        async def recorded() -> bool:
            return await pending(r) == 0

        await until(recorded, 0.9, "the confirms recorded (before the relay's 1 s idle tick)", every=0.01)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def test_drain_at_stop_records_what_was_confirmed(rig: RigFactory) -> None:
    """The stop's last pass publishes what is owed and records it, so a restart does not publish it again."""
    r = await rig()
    await r.ledger.enqueue(owed(2))
    assert await r.relay.flush() == 2
    await r.ledger.enqueue(owed(1, "video.completed"))
    await r.relay.drain()
    assert len(r.publisher.messages) == 3 and await pending(r) == 0


async def test_drain_records_confirms_even_when_the_broker_is_gone(rig: RigFactory) -> None:
    """Nothing more can be published, but what the broker already confirmed is still recorded."""
    r = await rig()
    await r.ledger.enqueue(owed(2))
    assert await r.relay.flush() == 2
    r.publisher.connected = False
    await r.relay.drain()
    assert await pending(r) == 0


async def test_an_unroutable_message_is_not_retried(rig: RigFactory) -> None:
    """A reply_to queue that is gone will not come back: the message is dropped (logged), not retried forever."""
    r = await rig()
    r.publisher.unroutable.add("gone-q")
    await r.ledger.enqueue([OutboxMessage("", "gone-q", b"{}", "x:failed", "x")])
    await r.relay.drain()
    assert await pending(r) == 0 and r.publisher.messages == []


async def test_a_broker_failure_keeps_the_messages_for_later(rig: RigFactory) -> None:
    """While publishing fails nothing is marked sent; once it works each message goes out exactly once."""
    r = await rig()
    await r.ledger.enqueue(owed(3))
    r.publisher.failure = ConnectionError("broker down")
    with pytest.raises(ConnectionError):
        await r.relay.flush()
    assert await pending(r) == 3
    r.publisher.failure = None
    assert await r.relay.flush() == 3
    assert len(r.publisher.messages) == 3


async def test_the_relay_loop_survives_failures_and_wakes_on_demand(rig: RigFactory) -> None:
    """The loop backs off while the publisher fails, then publishes what is owed without waiting for its idle tick."""
    r = await rig()
    r.publisher.failure = ConnectionError("broker down")
    await r.ledger.enqueue(owed(2))
    loop = asyncio.create_task(r.relay.run())
    try:
        await until(lambda: r.relay.failures >= 1, 5, "a failed publish")
        r.publisher.failure = None
        await until(lambda: len(r.publisher.messages) == 2, 10, "the owed messages after recovery")
        await r.ledger.enqueue(owed(1, "video.completed"))
        r.relay.wake()
        await until(lambda: len(r.publisher.messages) == 3, 0.9, "a woken relay (before its 1 s idle tick)")
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
